"""Damaged, hand-edited and hostile saves: the player keeps their story, with warnings that name the
save file and its line; what cannot be recovered is refused as `file:line:col`, never a traceback.

The model is not the point here: the games play on the scripted session (tests/fake_model.py), but
`simularity run` below, which plays on the real model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import datetime
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tomli_w

from simularity_tui import cli
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.scenario.loader import LoadedPack
from simularity_tui.story import Budgets, open_game
from simularity_tui.story.save_file import read_save
from simularity_tui.story.saves import copy_name, save_path, saves_dir
from simularity_tui.story.script import play_script
from simularity_tui.toml_source import TomlProblems, locate
from tests.conftest import TEST_THREADS

if TYPE_CHECKING:
    from simularity_tui.engine import ModelSession
    from tests.fake_model import FakeSession

SHORT = Budgets(line=12, directions=8)
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture
def lighthouse(tmp_path: Path) -> LoadedPack:
    return load_pack(Path(shutil.copytree(LIGHTHOUSE, tmp_path / "lighthouse")))


def damage(path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """Rewrite the save at `path` as `change` leaves its document; returns the new text."""
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    change(document)
    text = tomli_w.dumps(document)
    path.write_text(text, encoding="utf-8")
    return text


def at(path: Path, text: str, *key: str | int) -> str:
    """`file:line` of a key in a save, as warnings and problems name it."""
    return f"{path}:{locate(text, list(key))[0]}"


async def fresh_save(session: ModelSession, pack: LoadedPack, name: str) -> tuple[Path, list[tuple[int, ...]]]:
    """A new game (the episode's scripted opening, no model line yet) and its lines' tokens."""
    await session.reset()
    path = save_path("lighthouse", name)
    saved = await open_game(session, pack, path, budgets=SHORT)
    return path, [line.tokens for line in saved.game.lines]


# -- A. tokens --------------------------------------------------------------------------------------


async def test_tokens_that_are_not_numbers_are_read_again_from_the_text(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    path, tokens = await fresh_save(fake_session, lighthouse, "garbled")

    def garble(document: dict[str, Any]) -> None:
        document["nodes"][0]["tokens"] = "12 abc 7"
        document["nodes"][1]["tokens"] = ""  # a line the model would read as nothing at all
        document["nodes"][2]["tokens"] = "1" * 5000  # past what int() takes

    text = damage(path, garble)
    resumed = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    warnings = "\n".join(resumed.warnings)
    for index in (0, 1, 2):
        assert at(path, text, "nodes", index, "tokens") in warnings
    assert [line.tokens for line in resumed.game.lines] == tokens  # read again from the text: the same
    nodes = tomllib.loads(path.read_text())["nodes"]
    assert [tuple(int(t) for t in node["tokens"].split()) for node in nodes] == tokens  # mended on disk
    assert (await resumed.game.say("Hello?").finish()).speaker


async def test_tokens_outside_the_vocabulary_are_read_again_from_the_text(
    fake_session: FakeSession, lighthouse
) -> None:  # type: ignore[no-untyped-def]
    path, tokens = await fresh_save(fake_session, lighthouse, "vocabulary")

    def out_of_range(document: dict[str, Any]) -> None:
        document["nodes"][0]["tokens"] = "2 999999999 7"
        document["nodes"][2]["tokens"] = "-5 107"

    text = damage(path, out_of_range)
    resumed = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    warnings = "\n".join(resumed.warnings)
    assert at(path, text, "nodes", 0, "tokens") in warnings and at(path, text, "nodes", 2, "tokens") in warnings
    assert [line.tokens for line in resumed.game.lines] == tokens
    assert (await resumed.game.say("Hello?").finish()).speaker  # was: DecodeError on the first line


def test_without_a_vocabulary_size_only_what_is_no_token_id_is_read_again(tmp_path: Path) -> None:
    """A model server may not say how many tokens it has: negative and non-numeric ids are still caught."""
    pack = load_pack(LIGHTHOUSE)
    path = saves_dir("lighthouse") / "remote.toml"
    path.parent.mkdir(parents=True)
    path.write_text(SAVE_HEAD + node(1, 0, tokens="5 x") + node(2, 1, tokens="-3") + node(3, 2, tokens="999999999"))
    loaded = read_save(path, pack, model="remote:x")
    assert loaded.damaged_tokens == {1, 2}


# -- A. structure -----------------------------------------------------------------------------------


async def test_out_of_range_choices_head_and_summaries_load_with_warnings(
    fake_session: FakeSession, lighthouse
) -> None:  # type: ignore[no-untyped-def]
    path, _ = await fresh_save(fake_session, lighthouse, "ranges")

    def stretch(document: dict[str, Any]) -> None:
        document["root_chosen"] = 5
        document["nodes"][0]["chosen"] = 7
        document["head"] = 99
        document["nodes"][1]["summary"] = "Ash came in from the rain."
        document["nodes"][1]["summary_covers"] = 999
        document["nodes"][2]["summary"] = "Pip hissed."
        document["nodes"][2]["summary_covers"] = -4

    text = damage(path, stretch)
    resumed = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    warnings = "\n".join(resumed.warnings)
    for key in (("root_chosen",), ("nodes", 0, "chosen"), ("head",), ("nodes", 1, "summary_covers")):
        assert at(path, text, *key) in warnings, key
    game = resumed.game
    assert len(game.lines) == 3  # the head falls back to the end of the chosen lines
    assert 0 <= game.covered <= len(game.lines)
    assert game.variants() == (0, 1)
    assert game.undo() and game.redo() and game.switch_variant(1) == (0, 1)
    assert (await game.say("And then?").finish()).speaker
    assert game.tree.nodes[2].summary == (2, "Ash came in from the rain.")  # at most the lines up to it


async def test_structural_damage_is_refused_with_its_line(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    path, _ = await fresh_save(fake_session, lighthouse, "orphan")
    good = path.read_text()

    def orphan(document: dict[str, Any]) -> None:
        document["nodes"][2]["parent"] = 99

    text = damage(path, orphan)
    with pytest.raises(TomlProblems, match=re.escape(at(path, text, "nodes", 2, "parent")) + r":\d+: .*99"):
        await open_game(fake_session, lighthouse, path, budgets=SHORT)

    path.write_text(good)

    def twin(document: dict[str, Any]) -> None:
        document["nodes"][2]["id"] = 2

    text = damage(path, twin)
    with pytest.raises(TomlProblems, match=re.escape(at(path, text, "nodes", 2, "id")) + r":\d+: "):
        await open_game(fake_session, lighthouse, path, budgets=SHORT)


# -- A. through the real command line ---------------------------------------------------------------


def run_cli(*args: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.txt"
    path.write_text(script)
    command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
    command += ["--threads", str(TEST_THREADS)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def test_run_resumes_a_damaged_save_and_refuses_a_broken_one(tmp_path: Path, model_path: Path) -> None:
    started = run_cli("--save", "damaged", script="/quit\n", tmp_path=tmp_path)
    assert started.returncode == 0, started.stderr
    path = Path(os.environ["SIMULARITY_DATA_DIR"]) / "saves" / "lighthouse" / "damaged.toml"
    good = path.read_text()

    def hostile(document: dict[str, Any]) -> None:
        document["nodes"][0]["tokens"] = "12 abc 7"
        document["nodes"][1]["tokens"] = "999999999 -5"
        document["nodes"][1]["text"] = "Shut that door\x1b[2J\x1b]52;c;aGk=\x07 now."
        document["nodes"][1]["chosen"] = 3

    text = damage(path, hostile)
    resumed = run_cli("--save", "damaged", "--resume", script="Hello.\n", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"warning: {at(path, text, 'nodes', 0, 'tokens')}" in resumed.stderr
    assert f"warning: {at(path, text, 'nodes', 1, 'tokens')}" in resumed.stderr
    assert "\x1b" not in resumed.stdout and "\x07" not in resumed.stdout
    assert "Shut that door␛[2J␛]52;c;aGk=␇ now." in resumed.stdout
    assert "Ash: Hello." in resumed.stdout

    path.write_text(good)

    def broken(document: dict[str, Any]) -> None:
        document["nodes"][2]["parent"] = 42

    text = damage(path, broken)
    refused = run_cli("--save", "damaged", "--resume", script="Hello.\n", tmp_path=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"simularity: {at(path, text, 'nodes', 2, 'parent')}:" in refused.stderr


# -- C1. the saves directory ------------------------------------------------------------------------

SAVE_HEAD = """format = 1
pack = "lighthouse"
episode = "storm"
model = "remote:x"
created = 2026-01-01T00:00:00Z
updated = 2026-01-02T00:00:00Z
head = 0
"""


def node(node_id: int, parent: int, *, tokens: str) -> str:
    return (
        f'[[nodes]]\nid = {node_id}\nparent = {parent}\nspeaker = "narrator"\nkind = "scripted"\n'
        f'clock = "20:00"\ntext = "Rain."\ntokens = "{tokens}"\n'
    )


def test_saves_lists_what_it_cannot_read_and_never_crashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = saves_dir("lighthouse")
    directory.mkdir(parents=True)
    (directory / "good.toml").write_text(SAVE_HEAD + node(1, 0, tokens="1 2"))
    (directory / "ghost.toml").symlink_to(tmp_path / "nowhere.toml")  # dangling
    (directory / "folder.toml").mkdir()
    (directory / "odd.toml").write_text('nodes = 5\nupdated = "soon"\n')
    (directory / "garbage.toml").write_bytes(b"\xff\xfe not toml")
    locked = directory / "locked.toml"
    locked.write_text(SAVE_HEAD)
    locked.chmod(0)

    assert cli.main(["saves", str(LIGHTHOUSE)]) == 0
    listed = dict(line.split("\t")[:2] for line in capsys.readouterr().out.splitlines())
    assert listed["good"] == "2026-01-02 00:00:00+00:00, 1 lines"
    assert listed["ghost"] == listed["odd"] == listed["garbage"] == "unreadable"
    assert "folder" not in listed  # a directory is no save
    if os.geteuid() != 0:  # root reads any file
        assert listed["locked"] == "unreadable"

    assert cli.main(["saves", str(LIGHTHOUSE), "--delete", "folder"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["saves", str(LIGHTHOUSE), "--delete", "ghost"]) == 0
    assert not (directory / "ghost.toml").is_symlink()


# -- C2. /save in a script --------------------------------------------------------------------------


async def test_save_in_a_script_never_overwrites_unless_told(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    path, _ = await fresh_save(fake_session, lighthouse, "scripted")
    saved = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    out = StringIO()
    await play_script(saved, ["/save copy", "/edit The rain stops.", "/save copy", "/save! copy"], source="t", out=out)
    printed = out.getvalue().splitlines()
    assert printed.count("[saved a copy as 'copy']") == 2
    assert "[a save 'copy' exists already; /save another name, or /save! copy to replace it]" in printed
    copy = read_save(save_path("lighthouse", "copy"), lighthouse, model="")
    assert copy.tree.lines()[-1].text == "The rain stops."


# -- C3. copies made with Ctrl+S --------------------------------------------------------------------


def test_copy_names_keep_their_timestamp_and_never_collide() -> None:
    now = datetime(2026, 5, 4, 3, 2, 1)
    stem = "A very long save name that fills all of the sixty-four characters"[:64]
    first = copy_name("lighthouse", stem, now=now)
    assert first.endswith(" 2026-05-04 03.02.01") and len(first) <= 64
    save_path("lighthouse", first).parent.mkdir(parents=True)
    save_path("lighthouse", first).write_text("")
    second = copy_name("lighthouse", stem, now=now)
    assert second.endswith(" 2026-05-04 03.02.01 2") and len(second) <= 64 and second != first
    save_path("lighthouse", second).write_text("")
    assert copy_name("lighthouse", stem, now=now).endswith(" 3")
    assert copy_name("lighthouse", "short", now=now) == "short 2026-05-04 03.02.01"
    save_path("lighthouse", copy_name("lighthouse", "x", now=now))  # always a valid name


async def test_ctrl_s_twice_makes_two_copies(fake_session: FakeSession) -> None:
    from textual.widgets import Input

    from simularity_tui.settings import Settings
    from simularity_tui.ui.app import LaunchOptions, SimularityApp
    from simularity_tui.ui.play_screen import PlayScreen
    from tests.test_screens import SIZE, wait_for

    name = "A save whose name is long enough to leave no room for a timestamp"[:64]
    settings = Settings()
    settings.ui.graphics = "halfcell"
    app = SimularityApp(LaunchOptions(settings), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        app.play(load_pack(LIGHTHOUSE), save=name)
        await wait_for(lambda: isinstance(app.screen, PlayScreen) and bool(app.screen.query(Input)))
        app.screen.query_one(Input).focus()
        await pilot.press("ctrl+s")
        await pilot.press("ctrl+s")
        await pilot.pause()
    copies = sorted(p.stem for p in saves_dir("lighthouse").glob("*.toml") if p.stem != name)
    assert len(copies) == 2, copies
