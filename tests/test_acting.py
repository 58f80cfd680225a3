"""Ways to act: say a line, do something (the narrator tells it), write the story, or give a
direction outside the story that the next line alone reads. On the scripted session, in the TUI,
and through `simularity run` on the real model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.scenario.schema import NARRATOR
from simularity_tui.story import Game, open_game
from simularity_tui.story.reminders import DIRECTION, authors_note_id
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


async def test_do_and_story_are_narration_and_the_story_goes_on(lighthouse: LoadedPack) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    before = len(game.lines)
    await game.act("do", "opens the door").finish()
    told, reply = game.lines[before], game.lines[before + 1]
    assert (told.speaker, told.kind, told.text) == (NARRATOR, "narration", "Ash opens the door")
    assert reply.kind == "model"
    await game.act("do", "Ash shuts it again.").finish()  # already told in the third person: kept
    assert game.lines[-2].text == "Ash shuts it again."
    await game.act("story", "the wind drops, all at once.").finish()
    assert (game.lines[-2].speaker, game.lines[-2].text) == (NARRATOR, "The wind drops, all at once.")


async def test_a_direction_is_read_by_the_next_line_alone(lighthouse: LoadedPack) -> None:
    session = FakeSession()
    game = Game(session, lighthouse, "storm")
    before = len(game.lines)
    await game.act("ooc", "Mira should mention the boat.").finish()
    direction = authors_note_id("Mira should mention the boat.", DIRECTION)
    assert len(game.lines) == before + 1  # no line of the player's: only the reply
    assert direction in game.lines[-1].reminders and game.direction == ""
    assert "[direction: Mira should mention the boat.]" in session.detokenize(game.lines[-1].tokens)
    await game.say("And then?").finish()
    assert direction not in game.lines[-1].reminders  # read once


async def test_a_direction_is_kept_with_the_line_that_read_it(lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "acting")
    opened = await open_game(FakeSession(), lighthouse, path)
    await opened.game.act("ooc", "Slow down.").finish()
    saved = tomllib.loads(path.read_text())
    assert saved["authors_notes"] == {authors_note_id("Slow down.", DIRECTION): "Slow down."}
    resumed = await open_game(FakeSession(), lighthouse, path)
    known = {reminder.id: (reminder.tag, reminder.text) for reminder in resumed.game.known_reminders()}
    assert known[authors_note_id("Slow down.", DIRECTION)] == ("direction", "Slow down.")


async def test_ctrl_t_and_prefixes_choose_how_the_player_acts(fake_session: FakeSession) -> None:
    from textual.widgets import Input

    from tests.test_ui import SIZE, play_screen, turn, wait_for
    from tests.test_ui import lighthouse as app_for

    app = app_for(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        field = screen.query_one("#say", Input)
        await pilot.press("ctrl+t")
        assert screen.act == "do" and field.placeholder.startswith("Do something as Ash")
        await turn(pilot, screen, *"lights the lamp", "enter")
        assert any(line.text == "Ash lights the lamp" for line in screen.game.lines)
        await pilot.press("ctrl+t", "ctrl+t", "ctrl+t")
        assert screen.act == "say" and field.placeholder.startswith("Say something as Ash")
        await turn(pilot, screen, *"/story The lamp gutters.", "enter")
        await wait_for(lambda: any(line.text == "The lamp gutters." for line in screen.game.lines))
        assert screen.act == "say"  # a prefix acts for that entry only


def test_a_script_acts_every_way_on_the_real_model(tmp_path: Path, model_path: Path) -> None:
    script = "/do lights a candle\n/story The wind drops.\n/ooc Mira should mention the boat.\nHello?\n"
    path = tmp_path / "script.txt"
    path.write_text(script)
    command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
    command += ["--threads", str(TEST_THREADS), "--save", "acting"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "Narrator: Ash lights a candle" in out and "Narrator: The wind drops." in out
    assert "[direction: Mira should mention the boat.]" in out and "Ash: Hello?" in out
    saved = tomllib.loads(save_path("lighthouse", "acting").read_text())
    assert any(
        authors_note_id("Mira should mention the boat.", DIRECTION) in n.get("reminders", []) for n in saved["nodes"]
    )
    narrated = [(n["speaker"], n["kind"], n["text"]) for n in saved["nodes"] if n["speaker"] == NARRATOR]
    assert (NARRATOR, "narration", "The wind drops.") in narrated
    # Resumed: the acted lines are the story, and acting goes on from them.
    path.write_text("/do closes the shutters\n")
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "Narrator: Ash closes the shutters" in again.stdout.splitlines()
    resumed = tomllib.loads(save_path("lighthouse", "acting").read_text())
    assert [n for n in resumed["nodes"] if n["id"] in {m["id"] for m in saved["nodes"]}] == saved["nodes"]
    assert (NARRATOR, "Ash closes the shutters") in [(n["speaker"], n["text"]) for n in resumed["nodes"]]
