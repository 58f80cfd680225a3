"""The game in Textual's test harness, on the real model: open, type, watch the story stream, stop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App

from simularity_tui.engine import LlamaSession
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.settings import Settings
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.error_screen import ErrorScreen
from simularity_tui.ui.play_screen import PlayScreen
from simularity_tui.ui.transcript import LineView

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


async def play_screen(app: SimularityApp) -> PlayScreen:
    await wait_for(lambda: isinstance(app.screen, PlayScreen))
    assert isinstance(app.screen, PlayScreen)
    return app.screen


async def test_a_typed_line_gets_a_streamed_reply(session: LlamaSession) -> None:
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)
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


async def test_the_reply_is_shown_while_it_is_written(session: LlamaSession) -> None:
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)
    async with app.run_test(size=SIZE):
        screen = await play_screen(app)
        for _attempt in range(5):  # replies vary in length: watch until one is long enough to see grow
            lines_before = len(screen.game.lines)
            screen.action_continue_story()
            await wait_for(lambda: screen.turn is not None or len(screen.game.lines) > lines_before, every=0.002)
            sizes: list[int] = []

            def done() -> bool:
                sizes.append(len(screen.query(LineView)[-1].text))
                return not screen.busy

            await wait_for(done, every=0.005)
            partial = {size for size in sizes[:-1] if 0 < size < sizes[-1]}
            if len(partial) >= 3:
                return
        raise AssertionError("no reply was ever shown part-written")


async def test_escape_stops_the_reply_and_keeps_what_was_written(session: LlamaSession) -> None:
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        for _attempt in range(5):  # a short reply may end before Esc arrives: try another
            # Started directly: pilot.press() waits for the app to idle, i.e. for the whole reply.
            lines_before = len(screen.game.lines)
            screen.action_continue_story()
            await wait_for(lambda: screen.turn is not None or len(screen.game.lines) > lines_before, every=0.002)
            await wait_for(
                lambda: not screen.busy or (screen.turn is not None and len(screen.turn.text) > 10), every=0.005
            )
            reply = screen.turn
            if reply is None:
                continue
            await pilot.press("escape")
            await wait_for(lambda: not screen.busy, timeout=1.0)
            assert reply.result is not None
            if reply.result.stop_reason == "cancelled":
                break
        else:
            raise AssertionError("never caught a reply mid-way")
        last = screen.game.lines[-1]
        shown = screen.query(LineView)[-1]
        assert shown.text == last.text == reply.text.strip() and last.text
        # The next turn works after a stop.
        await pilot.press(*"Hello?", "enter")
        await wait_for(lambda: screen.game.lines[-1].text != last.text and not screen.busy)
        assert any(line.text == "Hello?" for line in screen.game.lines[-2:])


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


async def test_the_game_follows_pack_saves_and_shows_broken_ones(session: LlamaSession, tmp_path: Path) -> None:
    pack = Path(shutil.copytree(bundled_packs_dir() / "lighthouse", tmp_path / "lighthouse"))
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=pack), session=session)
    async with app.run_test(size=SIZE):
        screen = await play_screen(app)
        await asyncio.sleep(0.3)  # the watcher is listening
        mira = screen.query(LineView)[1]
        assert mira.speaker_name == "Mira" and mira.colour == "#ffb86b"
        characters = pack / "characters.toml"
        characters.write_text(characters.read_text().replace('name = "Mira"', 'name = "Mirabel"'))
        await wait_for(lambda: mira.speaker_name == "Mirabel", timeout=1.0)
        characters.write_text(characters.read_text().replace('name = "Pip"', "name = ["))

        def notified() -> str:  # what the game's notifications say (Textual keeps them on the app)
            return " ".join(f"{note.title} {note.message}" for note in app._notifications)

        await wait_for(lambda: f"{characters}:" in notified(), timeout=1.0)
        assert "TOML syntax error" in notified() and "last good version" in notified()
        assert screen.game.pack.characters["pip"].name == "Pip"


async def test_story_controls_regenerate_switch_undo_and_edit(session: LlamaSession) -> None:
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        game = screen.game
        await pilot.press(*"Hello", "enter")
        await wait_for(lambda: len(game.lines) == 5 and not screen.busy)
        await pilot.press("ctrl+r")
        await wait_for(lambda: game.variants() == (1, 2) and not screen.busy)
        await pilot.press("alt+left")
        assert game.variants() == (0, 2)
        await pilot.press("ctrl+z")
        assert game.lines[-1].text == "Hello" and len(screen.query(LineView)) == 4
        await pilot.press("ctrl+y", "ctrl+e")
        assert screen.query_one("#say").value == game.lines[-1].text
        await pilot.press(*" Truly.", "enter")
        assert game.lines[-1].text.endswith("Truly.") and screen.query(LineView)[-1].text.endswith("Truly.")
        assert game.tree.nodes[game.tree.head].line.kind == "model"  # edited in place
        await pilot.press("alt+1")  # Mira, the pack's first character besides the player
        assert game.silent == {"mira"} and "mira" not in game.speakers()


async def test_an_edit_in_progress_never_lands_on_another_line(session: LlamaSession) -> None:
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=session)
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
