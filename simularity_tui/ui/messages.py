"""What the screens ask of the app. A screen says what the player chose; the app, which owns
navigation, decides what shows next (messages bubble from a screen up to the app)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from ..room.doors import RoomDoor
    from ..scenario import LoadedPack


@dataclass
class PlayRequested(Message):
    """Play a pack: the save `save` (resumed when it exists), or `episode` in a new save (`save` None)."""

    loaded: LoadedPack
    save: str | None
    episode: str | None = None
    player_name: str | None = None
    player_description: str | None = None


@dataclass
class NewGameRequested(Message):
    """Ask for a new game's episode and player name."""

    loaded: LoadedPack


@dataclass
class SavesRequested(Message):
    """Show a pack's saves."""

    loaded: LoadedPack


@dataclass
class RoomRequested(Message):
    """Join a shared story on the host (the game gives the terminal to the room's screen)."""

    door: RoomDoor
