"""The library: every pack there is (bundled, and the player's own), with its cover and story.

Enter plays (the last game of the pack, or a new one), N starts a new game, S opens its saves.
A pack that does not load is listed with its problems, so an author sees why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ListItem, ListView, Static

from .. import paths
from ..untrusted_text import printable
from .messages import NewGameRequested, PlayRequested, RoomRequested, SavesRequested
from .stage_view import StageView

# The library is the first screen: what it needs only once the packs are scanned (the pack format,
# saves, Pillow) is imported then, in the scan's thread or the handler that needs it.
if TYPE_CHECKING:
    from ..errors import UserFacingError
    from ..room.doors import RoomDoor
    from ..scenario import LoadedPack
    from ..settings import GraphicsMode


def user_packs_dir() -> Path:
    return paths.data_dir() / "packs"


def pack_folders(scenarios_dir: str) -> list[Path]:
    """Where packs are: the bundled ones, the player's own, and `[game] scenarios_dir` when set."""
    from ..scenario import bundled_packs_dir

    folders = [bundled_packs_dir(), user_packs_dir()]
    if scenarios_dir:
        folders.append(Path(scenarios_dir).expanduser())
    return folders


def _scan_packs(folders: Callable[[], list[Path]]) -> tuple[list[LoadedPack], list[UserFacingError]]:
    """The packs in `folders()` and the problems of those that do not load (run in a thread: the
    pack format, with pydantic, is imported here too)."""
    from ..scenario import discover_packs

    return discover_packs(*folders())


def _doors() -> list[RoomDoor]:
    """The host's rooms this player may join (none outside a host, or where the host's list is bad)."""
    from ..errors import UserFacingError
    from ..room.doors import room_doors

    try:
        return room_doors()
    except UserFacingError:
        return []


class PackItem(ListItem):
    def __init__(self, loaded: LoadedPack) -> None:
        super().__init__(Label(Text(printable(loaded.pack.name))))
        self.loaded = loaded


_PARTS = {"player": "you play a character", "gm": "you direct", "spectator": "you watch"}


class RoomItem(ListItem):
    """A shared story on the host, which this player may join (room/doors.py)."""

    def __init__(self, door: RoomDoor) -> None:
        super().__init__(Label(Text(printable(f"⌂ {door.name}: {door.title}"), style="bold")))
        self.door = door


class BrokenItem(ListItem):
    def __init__(self, problem: UserFacingError) -> None:
        name = problem.path.parent.name if problem.path else "a pack"
        super().__init__(Label(Text(f"⚠ {printable(name)}", style="dim")))
        self.problem = problem


class LibraryScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "play", "Play"),
        Binding("n", "new_game", "New game"),
        Binding("s", "saves", "Saves"),
        Binding("r", "rescan", "Look again"),
        Binding("q", "app.quit", "Quit"),
    ]

    scanned = False  # the packs are listed (the scan runs in a thread)

    def __init__(self, graphics: GraphicsMode, folders: Callable[[], list[Path]]) -> None:
        """`folders`: where to look for packs, asked again on every scan (the settings may have changed)."""
        super().__init__()
        self.graphics = graphics
        self.folders = folders

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="library"):
            yield ListView(id="packs")
            with VerticalScroll(id="pack-details"):
                yield StageView(self.graphics, id="cover")
                yield Static(id="pack-title")
                yield Static(id="pack-tags")
                yield Static(id="pack-about")
                yield Static(id="pack-saves")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Library"
        self.query_one("#pack-title", Static).update(Text("Looking for packs…", style="dim"))
        self.call_after_refresh(self.scan)  # once drawn: the screen answers keys while the scan runs

    @work(exclusive=True, group="scan")
    async def scan(self) -> None:
        """Look for packs in a thread: a stranger's pack may take its time to read, and the screen
        must answer meanwhile (a pack that does not load is listed as broken, not waited for)."""
        title = self.query_one("#pack-title", Static)
        title.update(Text("Looking for packs…", style="dim"))
        packs, problems = await asyncio.to_thread(_scan_packs, self.folders)
        title.update("")
        listing = self.query_one("#packs", ListView)
        await listing.clear()
        rooms = [RoomItem(door) for door in _doors()]
        await listing.extend(
            [*rooms, *(PackItem(loaded) for loaded in packs), *(BrokenItem(problem) for problem in problems)]
        )
        listing.index = 0 if rooms or packs or problems else None
        listing.focus()
        if not packs and not problems:
            title.update("No packs found.")
        self.scanned = True

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        from ..model_session import written_for
        from ..story.saves import list_saves

        item = event.item
        title, tags, about, saves = (
            self.query_one(f"#pack-{part}", Static) for part in ("title", "tags", "about", "saves")
        )
        self.query_one("#cover", StageView).display = not isinstance(item, RoomItem)  # a room: no pack here
        if isinstance(item, PackItem):
            pack = item.loaded.pack
            title.update(
                Text(f"{printable(pack.name)}  ", style="bold").append(f"v{printable(pack.version)}", style="dim")
            )
            context = written_for(pack)
            written = f"\nwritten for {context:,} tokens of context" if context else ""
            tags.update(
                Text(
                    printable("  ".join(f"#{tag}" for tag in pack.tags) + f"   {pack.content_rating}{written}"),
                    style="italic",
                )
            )
            about.update(Text(printable(pack.description)))
            count = len(list_saves(pack.id))
            saves.update(
                Text(f"{count} save{'s' if count != 1 else ''} · Enter plays · N new game · S saves", style="dim")
            )
            self.show_cover(item.loaded)
        elif isinstance(item, RoomItem):
            door = item.door
            title.update(Text(printable(f"Room {door.name}: {door.title}"), style="bold"))
            tags.update(Text(f"a shared story · {_PARTS.get(door.role, door.role)}", style="italic"))
            about.update("Several players in one story on this host, each in their own terminal.")
            saves.update(Text("Enter joins", style="dim"))
        elif isinstance(item, BrokenItem):
            title.update(Text("This pack does not load", style="bold"))
            tags.update("")
            about.update(Text(printable(item.problem.render())))
            saves.update("")

    @work(exclusive=True, group="cover")
    async def show_cover(self, loaded: LoadedPack) -> None:
        from .stage_image import cover_picture

        self.query_one("#cover", StageView).show(cover_picture(loaded))

    def on_list_view_selected(self, _event: ListView.Selected) -> None:
        self.action_play()

    def _selected(self) -> LoadedPack | None:
        item = self.query_one("#packs", ListView).highlighted_child
        return item.loaded if isinstance(item, PackItem) else None

    def action_play(self) -> None:
        from ..story.saves import last_played

        item = self.query_one("#packs", ListView).highlighted_child
        if isinstance(item, RoomItem):
            self.post_message(RoomRequested(item.door))
            return
        loaded = self._selected()
        if loaded is not None:
            self.post_message(PlayRequested(loaded, save=last_played(loaded.pack.id)))

    def action_new_game(self) -> None:
        loaded = self._selected()
        if loaded is not None:
            self.post_message(NewGameRequested(loaded))

    def action_saves(self) -> None:
        loaded = self._selected()
        if loaded is not None:
            self.post_message(SavesRequested(loaded))

    def action_rescan(self) -> None:
        self.scan()
