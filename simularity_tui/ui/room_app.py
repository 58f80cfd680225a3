"""The app a player joins a shared story with (`simularity room join NAME`): one room screen, in the
player's own theme. It loads no model: the room's process plays the story."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import App

from .room_screen import RoomScreen
from .themes import DEFAULT_THEME, quick_themes

if TYPE_CHECKING:
    from ..room.doors import RoomDoor
    from ..settings import GraphicsMode


class RoomApp(App[None]):
    CSS_PATH = "room.tcss"
    TITLE = "Simularity"

    def __init__(self, door: RoomDoor, graphics: GraphicsMode, theme: str = DEFAULT_THEME) -> None:
        super().__init__()
        self.door = door
        self.graphics = graphics
        self.wanted_theme = theme
        self.farewell = ""  # why the room ended this player's place in it (a kick), said on exit

    def on_mount(self) -> None:
        for theme in quick_themes():
            self.register_theme(theme)
        self.theme = self.wanted_theme if self.wanted_theme in self.available_themes else DEFAULT_THEME
        self.push_screen(RoomScreen(self.door, self.graphics))
