"""The author's note (F7): the player's text the model reads near the end of the prompt.

A modal over the story: the note as it stands, edited in a text area; Ctrl+S keeps it (from the
next line on), Esc leaves it as it was. An empty note removes it. The game (story/game.py) keeps
the note in the save and re-appends it as the story moves on.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea


class NoteScreen(ModalScreen[str | None]):
    """Dismissed with the new note ("" removes it), or None when left unchanged."""

    BINDINGS = [Binding("ctrl+s", "keep", "Keep the note"), Binding("escape", "dismiss", "Back")]

    def __init__(self, note: str, every: int) -> None:
        super().__init__()
        self.note = note
        self.every = every

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Label(Text("Author's note", style="bold"))
            yield Static(
                Text(
                    f"The model reads it close to the end of the story: again whenever it is {self.every} lines "
                    "back. It applies from the next line; the lines written stay as they were.",
                    style="dim",
                )
            )
            yield TextArea(self.note, soft_wrap=True, show_line_numbers=False, id="note-text")
            with Horizontal(id="note-buttons"):
                yield Button("Keep", variant="primary", id="note-keep")
                yield Button("Remove", id="note-clear")
                yield Button("Back", id="note-back")

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "note-keep":
            self.action_keep()
        elif event.button.id == "note-clear":
            self.dismiss("")
        else:
            self.dismiss(None)

    def action_keep(self) -> None:
        self.dismiss(self.query_one(TextArea).text)
