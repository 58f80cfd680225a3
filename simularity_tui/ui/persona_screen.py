"""Persona (F9): who the player is — their character's name (what `{{user}}` says) and description —
changed during play. Both are in the pinned block: a change makes the next line read the story again,
which the status line says. Lines already written keep the name they were written with.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea


class PersonaScreen(ModalScreen[tuple[str, str] | None]):
    """Dismissed with (name, description), or None when left unchanged."""

    BINDINGS = [Binding("ctrl+s", "keep", "Keep"), Binding("escape", "dismiss", "Back")]

    def __init__(self, name: str, description: str) -> None:
        super().__init__()
        self.player = name
        self.description = description

    def compose(self) -> ComposeResult:
        with Vertical(id="persona-box"):
            yield Label(Text("Persona", style="bold"))
            yield Static(Text("Your name in the story, and who you are. The next line reads them.", style="dim"))
            yield Input(self.player, max_length=40, id="persona-name")
            yield TextArea(self.description, soft_wrap=True, id="persona-description")
            with Horizontal(id="persona-buttons"):
                yield Button("Keep", variant="primary", id="persona-keep")
                yield Button("Back", id="persona-back")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "persona-keep":
            self.action_keep()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_keep()

    def action_keep(self) -> None:
        name = " ".join(self.query_one(Input).value.split())
        self.dismiss((name, self.query_one(TextArea).text))
