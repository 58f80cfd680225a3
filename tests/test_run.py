"""`simularity run`: headless play from a script, saved as in the game, surviving SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.story.save_file import read_save
from tests.conftest import TEST_THREADS

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


def run(*args: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.txt"
    path.write_text(script)
    command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
    command += ["--threads", str(TEST_THREADS)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def saves(tmp_path: Path) -> Path:
    return Path(os.environ["SIMULARITY_DATA_DIR"]) / "saves" / "lighthouse"


def test_a_script_plays_commands_and_writes_a_save(tmp_path: Path, model_path: Path) -> None:
    script = "Hello! Is there any tea?\n/continue\n/regen\n/variant 1\n/undo\n/redo\n/edit Mira shrugs.\n" \
             "# a comment\n\n/scene lamp-room\n/save branch\n/export " + str(tmp_path / "story.md") + "\n"  # fmt: skip
    done = run("--save", "first", script=script, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("Narrator: Rain hammers the glass.")
    assert out[1] == "Mira: Shut that door before the sea follows you in. And mind the cat."
    assert "Ash: Hello! Is there any tea?" in out and "[achievement: A Proper Cuppa]" in out
    assert "[variant 1 of 2]" in out and any(line.endswith(": Mira shrugs.") for line in out)
    assert "[stage: go to The lamp room]" in out
    first, branch = saves(tmp_path) / "first.toml", saves(tmp_path) / "branch.toml"
    assert first.is_file() and branch.is_file() and (saves(tmp_path) / "first.kv").is_file()
    assert "# The Lighthouse at Gull Point" in (tmp_path / "story.md").read_text()
    lines = tomllib.loads(first.read_text())["nodes"]
    assert any(node["text"] == "Mira shrugs." for node in lines)

    listed = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "saves", str(LIGHTHOUSE)], capture_output=True, text=True
    )
    assert {line.split("\t")[0] for line in listed.stdout.splitlines()} == {"first", "branch"}
    deleted = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "saves", str(LIGHTHOUSE), "--delete", "branch"],
        capture_output=True,
        text=True,
    )
    assert deleted.returncode == 0 and not branch.exists()

    again = run("--save", "first", script="Goodnight.\n", tmp_path=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    resumed = run("--save", "first", "--resume", script="Goodnight.\n", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Ash: Goodnight." in resumed.stdout.splitlines() and ": Mira shrugs." in resumed.stdout


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("Hello.\n\n/fly away\n", ":3: unknown command '/fly'"),
        ("/undo\n/undo\n/undo\n/undo\n/edit x\n", ":5: '/edit x': the story has no line yet"),
        ("/regen\n/variant 5\n", ":2: the last line has 1 variant; there is no 5"),
        ("/variant two\n", ":1: '/variant two' needs a variant number"),
        ("/export /no/such/dir/story.md\n", ":1: cannot write /no/such/dir/story.md"),
    ],
)
def test_a_bad_script_line_is_named(tmp_path: Path, model_path: Path, script: str, said: str) -> None:
    done = run("--save", "bad", script=script, tmp_path=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'script.txt'}{said}" in done.stderr


def test_a_script_on_stdin_that_is_not_utf8_is_named(tmp_path: Path, model_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", "-",
         "--threads", str(TEST_THREADS)],
        input=b"Hello.\nhello \xff there\n", capture_output=True, timeout=300,
    )  # fmt: skip
    assert (
        done.returncode == 2 and b"-:2: the script is not UTF-8 text" in done.stderr and b"Traceback" not in done.stderr
    )


def test_a_game_killed_at_any_moment_keeps_every_finished_line(tmp_path: Path, model_path: Path) -> None:
    """SIGKILL at random moments, again and again: every save on disk loads, and it holds every line
    the transcript had finished printing (so at most the line in flight is lost)."""
    rng = random.Random(20261127)
    script = tmp_path / "script.txt"
    script.write_text("".join(f"Line {n}: tell me more about the lamp.\n" for n in range(60)))
    save = saves(tmp_path) / "crash.toml"
    command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(script),
               "--save", "crash", "--resume", "--threads", str(TEST_THREADS), "--n-ctx", "1024"]  # fmt: skip
    pack = load_pack(LIGHTHOUSE)
    grew = 0
    for kill in range(12):  # six kills, more while the game has not got far (a busy machine)
        if kill >= 6 and grew > 10:
            break
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.5, 6.0))
        process.send_signal(signal.SIGKILL)
        printed, errors = process.communicate()
        assert "Traceback" not in errors
        # A line is finished when its newline was printed; the text after the last one was in flight.
        finished = [line for line in printed.split("\n")[:-1] if line and not line.startswith("[")]
        if not save.exists():
            assert len(finished) <= 1, f"kill {kill}: lines were printed but no save was written"
            continue
        loaded = read_save(save, pack, model="")  # every save on disk loads (tokens are not needed here)
        in_save = len(loaded.tree.lines())
        assert in_save >= len(finished), f"kill {kill}: {len(finished)} lines printed, {in_save} saved"
        grew = max(grew, in_save)
    assert grew > 10, "the game never got far enough to test"
