"""Shown when the game cannot start: what is wrong, and what to do about it. Never a traceback."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..errors import UserFacingError
from ..untrusted_text import printable


class ErrorScreen(Screen[None]):
    BINDINGS = [Binding("q,escape,enter", "app.quit", "Quit")]

    def __init__(self, error: UserFacingError) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static("Simularity cannot start", id="error-title")
            yield Static(Text(printable(self.error.message)), id="error-message")
            if self.error.hint:
                yield Static(Text(printable(self.error.hint)), id="error-hint")
        yield Footer()
