"""Help: every key, on every screen, with what it does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from .screen_base import SimularityScreen


def screens_and_bindings() -> list[tuple[str, list[BindingType]]]:
    from .app import SimularityApp
    from .library_screen import LibraryScreen
    from .new_game_screen import NewGameScreen
    from .play_screen import PlayScreen
    from .saves_screen import SavesScreen
    from .settings_screen import SettingsScreen

    return [
        ("Everywhere", SimularityApp.BINDINGS),
        ("Library", LibraryScreen.BINDINGS),
        ("New game", NewGameScreen.BINDINGS),
        ("Play", PlayScreen.BINDINGS),
        ("Saves", SavesScreen.BINDINGS),
        ("Settings", SettingsScreen.BINDINGS),
    ]


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


class HelpScreen(SimularityScreen):
    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Back")]

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
        for where, bindings in screens_and_bindings():
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
