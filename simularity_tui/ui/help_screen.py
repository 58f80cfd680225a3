"""Help: every key, on every screen, with what it does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

Section = tuple[str, list[BindingType]]  # where (a screen, or everywhere), and its keys

_NAMES = {
    "escape": "Esc", "enter": "Enter", "left": "←", "right": "→", "up": "↑", "down": "↓",
    "pageup": "PgUp", "pagedown": "PgDn",
}  # fmt: skip


def key_label(keys: str) -> str:
    """`ctrl+left,alt+left` as `Ctrl+← / Alt+←`."""

    def one(key: str) -> str:
        return "+".join(
            _NAMES.get(part, part.capitalize() if len(part) > 1 else part.upper()) for part in key.split("+")
        )

    return " / ".join(one(key) for key in keys.split(","))


class HelpScreen(Screen[None]):
    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Back")]

    def __init__(self, sections: list[Section]) -> None:
        """`sections`: every screen's keys, in the order shown (the app knows its screens)."""
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text("Every key. Ctrl+P opens the command palette, where all of them can be searched.", style="dim")
        )
        yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Help"
        table = self.query_one(DataTable)
        table.add_columns("where", "key", "does")
        for where, bindings in self.sections:
            for binding in bindings:
                if not isinstance(binding, Binding) or not binding.description:
                    continue
                if binding.action.startswith("toggle_speaker("):  # nine alike: one row
                    if binding.key == "alt+1":
                        table.add_row(where, "Alt+1 … Alt+9", "Let the pack's 1st … 9th character speak, or not")
                    continue
                table.add_row(where, key_label(binding.key), binding.description)
        table.add_row("Everywhere", "Ctrl+P", "Command palette")
        table.add_row("Everywhere", "Ctrl+Q", "Quit")
        table.focus()
