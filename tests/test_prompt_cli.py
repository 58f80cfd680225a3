"""`simularity prompt`: what the model would read for the next line, as text or JSON, for a new
game, a save, or after a line the player says; bad input said in words. `prompt_output` runs on
the scripted session (tests/fake_model.py); the command itself runs once, on the real model's
vocabulary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simularity_tui import cli
from simularity_tui.cli_prompt import prompt_output
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import open_game
from simularity_tui.story.saves import kv_path, save_path
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


def test_the_text_names_every_part_with_its_tokens(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    text, warnings = prompt_output(fake_session, lighthouse)
    assert not warnings
    assert text.startswith("The Lighthouse at Gull Point · a new game of 'storm' · fake")
    for heading in ("=== Pinned block · ", "=== The story · ", "=== The next line · "):
        assert heading in text
    assert "--- scenario · " in text and "--- examples · " in text and "--- line · line 2 · Mira · " in text
    assert "Mira: Mind the stairs." in text and "\nTotal: " in text and "\nKV reuse: the next turn keeps " in text


def test_json_has_a_stable_shape_that_adds_up(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    document = json.loads(prompt_output(fake_session, lighthouse, episode="midnight", as_json=True)[0])
    assert set(document) == {"format", "n_ctx", "chat_template", "total_tokens", "reused_tokens", "parts", "lore"}
    assert document["format"] == 1 and document["n_ctx"] == fake_session.n_ctx
    assert all(set(part) == {"section", "label", "text", "tokens", "detail"} for part in document["parts"])
    assert sum(part["tokens"] for part in document["parts"]) == document["total_tokens"]
    assert [p["section"] for p in document["parts"]][-1] == "open" and document["parts"][-1]["label"] == "stage"
    assert set(document["lore"]) == {"line", "fired", "kept", "dropped"}
    assert "The lamp room" in "".join(p["text"] for p in document["parts"] if p["label"] == "opening")


def test_say_shows_the_line_and_the_lore_it_brings_without_saving(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    document = json.loads(prompt_output(fake_session, lighthouse, say="Whose boat is that?", as_json=True)[0])
    story = [part for part in document["parts"] if part["section"] == "story"]
    assert story[-1]["text"] == "Ash (20:02): Whose boat is that?\n" and story[-1]["detail"] == "line 4 · Ash"
    fired = {firing["entry"]: firing for firing in document["lore"]["fired"]}
    assert fired["the-boat"]["via"] == "key" and fired["the-boat"]["source"] == "line 4"
    assert not save_path("lighthouse", "autosave").parent.exists()  # nothing written


async def test_a_save_is_shown_as_resuming_would_find_it(lighthouse: LoadedPack) -> None:
    played = FakeSession()
    path = save_path("lighthouse", "evening")
    saved = await open_game(played, lighthouse, path)
    await saved.game.say("Is there tea?").finish()
    await saved.write_kv()
    before = path.read_text()
    fresh = FakeSession()  # another process: it knows the save and its KV state file only
    text, warnings = prompt_output(fresh, lighthouse, save="evening")
    assert not warnings and "the save 'evening'" in text and "Ash (20:02): Is there tea?" in text
    document = json.loads(prompt_output(fresh, lighthouse, save="evening", as_json=True)[0])
    assert 0 < document["reused_tokens"] < document["total_tokens"]  # the KV state file's tokens
    assert path.read_text() == before and kv_path(path).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/pack"], "no such pack directory"),
        ([str(LIGHTHOUSE), "--episode", "nope"], "no episode 'nope'"),
        ([str(LIGHTHOUSE), "--save", "nope"], "has no save 'nope'"),
        ([str(LIGHTHOUSE), "--save", "../up"], "cannot name a save"),
        ([str(LIGHTHOUSE), "--save", "x", "--episode", "storm"], "--episode and --save both given"),
        ([str(LIGHTHOUSE), "--model", "/nonexistent/model.gguf"], "Model file not found"),
    ],
)
def test_bad_input_is_said_in_words(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prompt", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_command_runs_on_the_model_s_vocabulary(model_path: Path) -> None:
    command = [sys.executable, "-m", "simularity_tui", "prompt", str(LIGHTHOUSE), "--say", "Is that signal for a boat?"]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["n_ctx"] == 4096 and sum(p["tokens"] for p in document["parts"]) == document["total_tokens"]
    assert document["reused_tokens"] == 0  # a new game: nothing in the KV yet
    assert {"the-signal", "the-boat"} <= {firing["entry"] for firing in document["lore"]["fired"]}
    text = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "=== Pinned block · " in text.stdout and "Lore for line 5: " in text.stdout
