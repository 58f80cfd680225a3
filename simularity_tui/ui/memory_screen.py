"""Memory (F8): what the model keeps of the story — the summary it wrote of the lines that left the
context, and the player's plot essentials — shown and corrected.

Both sit in the pinned block, at the top of the prompt: changing one makes the next line read the
story again after it, which the play screen's status line says (in tokens) until that line is
written. Ctrl+S keeps both; Esc leaves them as they were.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea


class MemoryScreen(ModalScreen[tuple[str, str] | None]):
    """Dismissed with (summary, essentials), or None when left unchanged."""

    BINDINGS = [Binding("ctrl+s", "keep", "Keep"), Binding("escape", "dismiss", "Back")]

    def __init__(self, summary: str, essentials: str, *, has_lines: bool) -> None:
        super().__init__()
        self.summary = summary
        self.essentials = essentials
        self.has_lines = has_lines

    def compose(self) -> ComposeResult:
        with Vertical(id="memory-box"):
            yield Label(Text("Memory", style="bold"))
            yield Static(
                Text(
                    "The summary of the story so far: the model writes it when old lines leave its context, "
                    "and reads it instead of them. A change here makes the next line read the story again.",
                    style="dim",
                )
            )
            yield TextArea(self.summary, soft_wrap=True, disabled=not self.has_lines, id="memory-summary")
            yield Static(Text("Plot essentials: facts the model always reads, whatever it forgets.", style="dim"))
            yield TextArea(self.essentials, soft_wrap=True, id="memory-essentials")
            with Horizontal(id="memory-buttons"):
                yield Button("Keep", variant="primary", id="memory-keep")
                yield Button("Back", id="memory-back")

    def on_mount(self) -> None:
        self.query_one("#memory-essentials" if not self.has_lines else "#memory-summary", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "memory-keep":
            self.action_keep()
        else:
            self.dismiss(None)

    def action_keep(self) -> None:
        summary = self.query_one("#memory-summary", TextArea).text
        essentials = self.query_one("#memory-essentials", TextArea).text
        self.dismiss((summary, essentials))
