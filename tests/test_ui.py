"""The game in Textual's test harness: open, type, watch the story stream, stop, steer.

One game on the real model (a typed line gets a real streamed reply); the rest on the fake model,
whose scripted lines make what the screen must show exact."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, Static

from simularity_tui.engine import ModelSession
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.settings import Settings
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.error_screen import ErrorScreen
from simularity_tui.ui.play_screen import PlayScreen
from simularity_tui.ui.transcript import LineView, Transcript
from tests.fake_model import FakeSession

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

SIZE = (100, 32)
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.02) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(every)


def screen_text(app: SimularityApp) -> str:
    return " ".join(str(widget.render()) for widget in app.screen.query("Static"))


def rendered(view: LineView) -> str:
    return str(view.render())


def lighthouse(session: ModelSession) -> SimularityApp:
    """The game, playing the bundled lighthouse pack at once."""
    return SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)


async def turn(pilot: Pilot[None], screen: PlayScreen, *keys: str) -> None:
    """Press keys that start a turn (Enter, Ctrl+N, Ctrl+R), and wait until it is over."""
    await pilot.press(*keys)
    await wait_for(lambda: not screen.busy)


async def play_screen(app: SimularityApp) -> PlayScreen:
    await wait_for(lambda: isinstance(app.screen, PlayScreen))
    assert isinstance(app.screen, PlayScreen)
    return app.screen


async def test_a_typed_line_gets_a_streamed_reply(session: LlamaSession) -> None:
    app = lighthouse(session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        opening = list(screen.query(LineView))
        assert len(opening) == 3 and "Shut that door" in rendered(opening[1])
        await pilot.click("#say")
        await pilot.press(*"Can I stay until the storm passes?", "enter")
        await wait_for(lambda: len(screen.game.lines) == 5 and not screen.busy)
        lines = list(screen.query(LineView))
        assert "Ash: Can I stay until the storm passes?" in rendered(lines[3])
        reply = lines[4]
        assert reply.speaker_name in {"Mira", "Pip", "Narrator"} and reply.text.strip()
        assert screen.game.lines[-1].text == reply.text


LONG = "The keeper trims the wick, listens to the rain on the glass, and says nothing for a while."


async def test_the_reply_is_shown_while_it_is_written(fake_session: FakeSession) -> None:
    fake_session.replies.append(LONG)
    fake_session.piece_delay = 0.01
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE):
        screen = await play_screen(app)
        screen.action_continue_story()  # started directly: pilot.press() would wait for the whole reply
        sizes: list[int] = []

        def done() -> bool:
            sizes.append(len(screen.query(LineView)[-1].text))
            return not screen.busy

        await wait_for(done, every=0.005)
        assert screen.query(LineView)[-1].text == LONG == screen.game.lines[-1].text
        assert len({size for size in sizes if 0 < size < len(LONG)}) >= 3, "shown part-written, as it streams"


async def test_escape_stops_the_reply_and_keeps_what_was_written(fake_session: FakeSession) -> None:
    fake_session.replies.append(LONG)
    fake_session.piece_delay = 0.05
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        screen.action_continue_story()
        await wait_for(lambda: screen.turn is not None and len(screen.turn.text) > 10, every=0.005)
        reply = screen.turn
        assert reply is not None
        await pilot.press("escape")
        await wait_for(lambda: not screen.busy, timeout=2.0)
        assert reply.result is not None and reply.result.stop_reason == "cancelled"
        last = screen.game.lines[-1]
        shown = screen.query(LineView)[-1]
        assert shown.text == last.text == reply.text.strip() and LONG.startswith(last.text) and last.text != LONG
        # The next turn works after a stop.
        fake_session.piece_delay = 0.0
        fake_session.replies.append("Stay, then.")
        await pilot.press(*"Hello?", "enter")
        await wait_for(lambda: screen.game.lines[-1].text == "Stay, then." and not screen.busy)
        assert screen.game.lines[-2].text == "Hello?"


async def test_model_output_cannot_drive_the_terminal() -> None:
    hostile = "calm\x1b[2J\x1b]0;pwned\x07 text\x9b31m \u202eevil"
    app = App[None]()
    async with app.run_test(size=SIZE):
        view = LineView("Mira\x1b[5m", "#ffb86b", hostile)
        await app.screen.mount(view)
        text = rendered(view)
        assert not any(char in text for char in "\x1b\x07\x9b\u202e")
        assert "calm" in text and "text" in text and "Mira" in text


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "Check the path"),
        ("not-gguf", "not a GGUF model file"),
        ("truncated", "incomplete GGUF file"),
        ("context", "Set n_ctx to 32,768 or less"),
    ],
)
async def test_bad_model_input_shows_an_error_screen(
    case: str, expected: str, tmp_path: Path, model_path: Path
) -> None:
    settings = Settings()
    chosen = tmp_path / f"{case}.gguf"
    if case == "not-gguf":
        chosen.write_text("not weights")
    elif case == "truncated":
        chosen.write_bytes(model_path.read_bytes()[:50_000_000])
    elif case == "context":
        chosen, settings.model.n_ctx = model_path, 65536
    app = SimularityApp(LaunchOptions(settings, model_override=chosen, pack_dir=LIGHTHOUSE))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, ErrorScreen) and expected in screen_text(app))
        assert chosen.name in screen_text(app)
        await pilot.press("q")
    assert app.error is not None and chosen.name in app.error.message


async def test_the_game_follows_pack_saves_and_shows_broken_ones(fake_session: FakeSession, tmp_path: Path) -> None:
    pack = Path(shutil.copytree(bundled_packs_dir() / "lighthouse", tmp_path / "lighthouse"))
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=pack), session=fake_session)
    async with app.run_test(size=SIZE):
        screen = await play_screen(app)
        await asyncio.sleep(0.3)  # the watcher is listening
        mira = screen.query(LineView)[1]
        assert mira.speaker_name == "Mira" and mira.colour == "#ffb86b"
        characters = pack / "characters.toml"
        characters.write_text(characters.read_text().replace('name = "Mira"', 'name = "Mirabel"'))
        await wait_for(lambda: mira.speaker_name == "Mirabel", timeout=1.0)
        scenario = pack / "scenario.toml"
        scenario.write_text(scenario.read_text().replace('primary = "#ffb86b"', 'primary = "#40c040"'))
        await wait_for(lambda: app.current_theme.primary == "#40c040", timeout=1.0)  # the app follows the pack
        characters.write_text(characters.read_text().replace('name = "Pip"', "name = ["))

        def notified() -> str:  # what the game's notifications say (Textual keeps them on the app)
            return " ".join(f"{note.title} {note.message}" for note in app._notifications)

        await wait_for(lambda: f"{characters}:" in notified(), timeout=1.0)
        assert "TOML syntax error" in notified() and "last good version" in notified()
        assert screen.game.pack.characters["pip"].name == "Pip"


async def test_story_controls_regenerate_switch_undo_and_edit(fake_session: FakeSession) -> None:
    fake_session.replies.extend(["Come in, then.", "Shut the door."])
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        game = screen.game
        status = screen.query_one("#status", Static)
        await turn(pilot, screen, *"Hello", "enter")
        assert len(game.lines) == 5 and "tok/s" in str(status.render()) and "variant" not in str(status.render())
        await turn(pilot, screen, "ctrl+r")
        assert game.variants() == (1, 2) and screen.query(LineView)[-1].text == "Shut the door."
        assert "variant 2/2" in str(status.render())
        await pilot.press("alt+left")
        assert game.variants() == (0, 2) and screen.query(LineView)[-1].text == "Come in, then."
        assert "variant 1/2" in str(status.render())
        await pilot.press("ctrl+z")
        assert game.lines[-1].text == "Hello" and len(screen.query(LineView)) == 4
        await pilot.press("ctrl+y", "ctrl+e")
        assert screen.query_one("#say").value == game.lines[-1].text
        await pilot.press(*" Truly.", "enter")
        assert game.lines[-1].text.endswith("Truly.") and screen.query(LineView)[-1].text.endswith("Truly.")
        assert game.tree.nodes[game.tree.head].line.kind == "model"  # edited in place
        await pilot.press("alt+1")  # Mira, the pack's first character besides the player
        assert game.silent == {"mira"} and "mira" not in game.speakers()


async def test_an_edit_in_progress_never_lands_on_another_line(fake_session: FakeSession) -> None:
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        game = screen.game
        pip, mira = game.lines[-1].text, game.lines[-2].text
        await pilot.press("ctrl+e")
        assert screen.editing == game.tree.head and screen.query_one("#say").value == pip
        await pilot.press("ctrl+z")  # stepping back ends the edit
        assert screen.editing is None and screen.query_one("#say").value == ""
        assert game.lines[-1].text == mira
        await pilot.press("ctrl+y")
        assert game.lines[-1].text == pip


async def test_arrow_keys_steer_the_story_only_from_an_empty_line(fake_session: FakeSession) -> None:
    fake_session.replies.extend(["First.", "Second."])
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        game = screen.game
        await turn(pilot, screen, "ctrl+n")
        await turn(pilot, screen, "ctrl+r")
        assert len(game.lines) == 4 and game.variants() == (1, 2)
        say = screen.query_one("#say", Input)
        await pilot.press(*"ab", "left")  # with text: the cursor moves, the story stays
        assert say.cursor_position == 1 and game.variants() == (1, 2)
        await pilot.press("up", "down")
        assert len(game.lines) == 4 and say.value == "ab"
        say.clear()
        await pilot.press("left")
        assert game.variants() == (0, 2) and game.lines[-1].text == "First."
        await pilot.press("right")
        assert game.variants() == (1, 2) and game.lines[-1].text == "Second."
        await pilot.press("up")
        assert len(game.lines) == 3 and len(screen.query(LineView)) == 3
        await pilot.press("down")
        assert game.lines[-1].text == "Second." and len(screen.query(LineView)) == 4


async def test_the_story_keeps_to_its_newest_line_until_the_reader_scrolls_back(fake_session: FakeSession) -> None:
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        transcript = screen.query_one(Transcript)
        assert transcript.scroll_y == 0, "a story shorter than the transcript starts at its top"
        for _line in range(8):  # the story outgrows the transcript
            await turn(pilot, screen, "ctrl+n")
        await pilot.pause()
        assert transcript.max_scroll_y > 0 and transcript.scroll_y == transcript.max_scroll_y
        await pilot.press("pageup")
        held = transcript.scroll_y
        assert held < transcript.max_scroll_y
        await turn(pilot, screen, "ctrl+n")
        await pilot.pause()
        assert transcript.scroll_y == held, "the reader's place is kept while the story goes on"
        await pilot.press("pagedown", "pagedown", "pagedown")
        await turn(pilot, screen, "ctrl+n")
        await pilot.pause()
        assert transcript.scroll_y == transcript.max_scroll_y, "back at the end, it follows again"


async def test_the_authors_note_is_written_in_its_screen_and_kept_in_the_save(fake_session: FakeSession) -> None:
    from textual.widgets import TextArea

    from simularity_tui.story.reminders import authors_note_id
    from simularity_tui.ui.note_screen import NoteScreen

    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await pilot.press("f7")
        await wait_for(lambda: isinstance(app.screen, NoteScreen))
        await pilot.press(*"Keep it eerie.", "ctrl+s")
        await wait_for(lambda: app.screen is screen)
        assert screen.game.authors_note == "Keep it eerie."
        assert 'authors_note = "Keep it eerie."' in screen.saved.path.read_text()
        await turn(pilot, screen, *"Hello", "enter")
        assert authors_note_id("Keep it eerie.") in screen.game.lines[-1].reminders
        await pilot.press("f7")  # Esc leaves it as it was; Remove takes it away
        await wait_for(lambda: isinstance(app.screen, NoteScreen))
        assert app.screen.query_one(TextArea).text == "Keep it eerie."
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen)
        assert screen.game.authors_note == "Keep it eerie."
        await pilot.press("f7")
        await wait_for(lambda: isinstance(app.screen, NoteScreen))
        await pilot.click("#note-clear")
        await wait_for(lambda: app.screen is screen)
        assert screen.game.authors_note == "" and "authors_note =" not in screen.saved.path.read_text()


async def test_memory_is_corrected_in_its_screen_and_the_status_line_says_the_cost(fake_session: FakeSession) -> None:
    from textual.widgets import TextArea

    from simularity_tui.ui.memory_screen import MemoryScreen

    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await turn(pilot, screen, *"Hello", "enter")
        await pilot.press("f8")
        await wait_for(lambda: isinstance(app.screen, MemoryScreen))
        app.screen.query_one("#memory-summary", TextArea).text = "Ash came in from the storm."
        app.screen.query_one("#memory-essentials", TextArea).text = "The boat is Mira's."
        await pilot.press("ctrl+s")
        await wait_for(lambda: app.screen is screen)
        assert (screen.game.summary, screen.game.essentials) == ("Ash came in from the storm.", "The boat is Mira's.")
        status = screen.query_one("#status", Static)
        assert "the next line re-reads" in str(status.render())
        await turn(pilot, screen, *"Go on", "enter")
        assert "re-reads" not in str(status.render())  # paid with that line


async def test_the_persona_is_changed_in_its_screen(fake_session: FakeSession) -> None:
    from simularity_tui.ui.persona_screen import PersonaScreen

    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await pilot.press("f9")
        await wait_for(lambda: isinstance(app.screen, PersonaScreen))
        field = app.screen.query_one("#persona-name", Input)
        field.value = "Wren [b]the lost[/b]"
        await pilot.press("ctrl+s")
        await wait_for(lambda: app.screen is screen)
        assert screen.game.pack.player.name == "Wren [b]the lost[/b]"
        assert 'player_name = "Wren [b]the lost[/b]"' in screen.saved.path.read_text()
        await turn(pilot, screen, *"Hello", "enter")
        (said,) = [view for view in screen.query(LineView) if view.speaker_name == "Wren [b]the lost[/b]"]
        assert str(said.render()).startswith("Wren [b]the lost[/b]: Hello")  # brackets shown, never markup
