"""Every screen, as SVG snapshots at 80×24 and 160×48 (pytest-textual-snapshot), on the fake model:
a screen's look does not depend on what a model would write.

Run `pytest tests/test_snapshots.py --snapshot-update` after a change to how a screen looks, and
look at the report before keeping the new pictures.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from textual.app import App

from simularity_tui.errors import UserFacingError
from simularity_tui.room.client import RoomConnection
from simularity_tui.room.doors import ROOMS_VARIABLE, RoomDoor, doors_variable
from simularity_tui.room.rules import RoomConfig, RoomLaunch
from simularity_tui.room.server import RoomServer
from simularity_tui.room.table import Table
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.settings import Settings
from simularity_tui.story import open_game
from simularity_tui.story.saves import save_path
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.error_screen import ErrorScreen
from simularity_tui.ui.loading_screen import LoadingScreen
from simularity_tui.ui.room_app import RoomApp
from tests.fake_model import FakeSession

SIZES = [(80, 24), (160, 48)]
FIXED = Path("/tmp/simularity-snapshots")  # paths on screen must not change from run to run
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"
FOREVER = {"theme-watch", "pack-watch", "room"}  # workers that watch for as long as their screen shows


@pytest.fixture(autouse=True)
def fixed_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(FIXED, ignore_errors=True)
    monkeypatch.setenv("SIMULARITY_CONFIG_DIR", str(FIXED / "config"))
    monkeypatch.setenv("SIMULARITY_DATA_DIR", str(FIXED / "data"))


def app(session: FakeSession, **options: object) -> SimularityApp:
    settings = Settings()
    settings.ui.graphics = "halfcell"
    return SimularityApp(LaunchOptions(settings, **options), session=session)  # type: ignore[arg-type]


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Until the screen is drawn as it will stay: the library's scan and every worker that ends (a
    cover, a stage picture, a turn) done, then the frames they asked for. A fixed pause would be
    too short on a slow machine and idle time on a fast one. The watchers run for ever."""
    for _ in range(400):
        busy = [worker for worker in pilot.app.workers if worker.is_running and worker.group not in FOREVER]
        if not busy and getattr(pilot.app.screen, "scanned", True):
            break
        await pilot.pause(0.025)
    await pilot.pause(0.1)
    await pilot.wait_for_scheduled_animations()
    for field in pilot.app.screen.query("Input, TextArea"):  # a blinking cursor is on or off by the clock: hold it on
        field.cursor_blink = False
    await pilot.pause(0.1)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES)
def test_library(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(fake_session), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_new_game(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)

    assert snap_compare(app(fake_session), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_play(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_the_authors_note(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        pilot.app.screen.game.set_authors_note("Keep it eerie: the lamp's flicker spells a word.")
        await pilot.press("f7")
        pilot.app.screen.query_one("#note-keep").focus()  # a text area's cursor draws by a timer: none shown
        await settle(pilot)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_memory(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        pilot.app.screen.game.set_memory(summary="Ash came in from the storm.", essentials="The boat is Mira's.")
        await pilot.press("f8")
        pilot.app.screen.query_one("#memory-keep").focus()  # a text area's cursor draws by a timer: none shown
        await settle(pilot)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_persona(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("f9")
        pilot.app.screen.query_one("#persona-keep").focus()  # no cursor: it draws by a timer
        await settle(pilot)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_lore(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("f10")
        pilot.app.screen.query_one("#lore-table").focus()  # no cursor: it draws by a timer
        await settle(pilot)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_story_tree(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    fake_session.replies.extend(["Come in, then.", "Shut the door first."])

    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        game = pilot.app.screen.game
        await game.say("Hello?").finish()
        await game.regenerate().finish()
        await pilot.press("ctrl+b")
        await settle(pilot)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_play_with_the_prompt_inspector(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("f6")
        parts = pilot.app.screen.query_one("#prompt-parts")
        for _ in range(200):  # the view is built in a worker thread
            if "Pinned block" in str(parts.render()):
                break
            await pilot.pause(0.05)
        await settle(pilot)
        await pilot.pause(0.5)

    assert snap_compare(app(fake_session, pack_dir=LIGHTHOUSE), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_saves(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    loaded = load_pack(LIGHTHOUSE)
    for name in ("evening", "midnight run"):
        path = save_path("lighthouse", name)
        asyncio.run(open_game(fake_session, loaded, path))
        path.write_text(re.sub(r"updated = .*", "updated = 2026-11-27T20:00:00Z", path.read_text()))

    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(app(fake_session), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_settings(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("f2")
        await settle(pilot)

    assert snap_compare(app(fake_session), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(app(fake_session), terminal_size=size, run_before=open_it)


class Showing(App[None]):
    """One screen on its own, in the game's styles."""

    CSS_PATH = str(Path(__file__).resolve().parents[1] / "simularity_tui" / "ui" / "app.tcss")

    def __init__(self, screen: object) -> None:
        super().__init__()
        self.shown = screen

    def on_mount(self) -> None:
        self.push_screen(self.shown)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES)
def test_loading(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    loading = LoadingScreen()

    async def progress(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        loading.show_progress(120 << 20, 241 << 20)
        await settle(pilot)

    assert snap_compare(Showing(loading), terminal_size=size, run_before=progress)


@pytest.mark.parametrize("size", SIZES)
def test_error(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    error = UserFacingError(
        "Model file not found: /models/missing.gguf",
        hint="Check the path, or leave the model setting empty to play on the embedded model.",
    )
    assert snap_compare(Showing(ErrorScreen(error)), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_library_with_a_room(snap_compare, fake_session: FakeSession, size: tuple[int, int], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    door = RoomDoor("tea", "Starlight Café", str(FIXED / "room.sock"), "key", "player")
    monkeypatch.setenv(ROOMS_VARIABLE, doors_variable([door])[ROOMS_VARIABLE])
    assert snap_compare(app(fake_session), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_room(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """alice's screen in a room where bob has spoken and the story answered him."""
    cafe = load_pack(bundled_packs_dir() / "starlight-cafe")
    socket = FIXED / "room.sock"
    config = RoomConfig(pack=str(cafe.root), players=["alice", "bob"], characters={"alice": "rin", "bob": "juno"})
    launch = RoomLaunch(
        name="tea", config=config, pack_dir=str(cafe.root), socket=str(socket), save="room",
        keys={"key-a": "alice", "key-b": "bob"},
    )  # fmt: skip
    door = RoomDoor("tea", "Starlight Café", str(socket), "key-a", "player")
    kept: list[object] = []  # bob stays connected while the picture is taken

    async def play(pilot) -> None:  # type: ignore[no-untyped-def]
        server = RoomServer(launch)
        saved = await open_game(fake_session, cafe, save_path(cafe.pack.id, "room"))
        server.table = Table(saved, "tea", config, server.emit)
        socket.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.start_unix_server(server.connection, path=str(socket))
        asyncio.ensure_future(server.table.run())
        bob = await RoomConnection.open(str(socket), "key-b")
        kept.extend([server, bob])
        while (await bob.receive() or {}).get("t") != "welcome":
            pass
        for _ in range(100):  # alice's screen finds the room (it looks again every second)
            if any(client.player == "alice" for client in server.clients):
                break
            await pilot.pause(0.05)
        await bob.send({"t": "say", "text": "Welcome back! The usual?"})
        while (message := await bob.receive()) is not None and not (
            message["t"] == "line" and message["line"]["player"] == ""
        ):
            pass
        await settle(pilot)

    assert snap_compare(RoomApp(door, "halfcell"), terminal_size=size, run_before=play)
