"""Lore (F10): every lore entry in play — the pack's and the player's own — and a line to add,
edit, disable, enable or delete them while playing (the same commands as `/lore` in scripts). The
player's entries are kept in the save, never written to the pack (story/player_lore.py).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from ..errors import UserFacingError
from ..story import Game
from ..story.player_lore import lore_command
from ..untrusted_text import printable


class LoreScreen(ModalScreen[bool]):
    """Dismissed with whether the lore changed."""

    BINDINGS = [Binding("escape", "close", "Back")]

    def __init__(self, game: Game) -> None:
        super().__init__()
        self.game = game
        self.changed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="lore-box"):
            yield Label(Text("Lore", style="bold"))
            yield DataTable(id="lore-table", cursor_type="row", zebra_stripes=True)
            yield Static(
                Text(
                    "add ID KEY, KEY: TEXT · edit ID: TEXT · disable ID · enable ID · delete ID "
                    "(yours are kept in the save; the pack's files stay as they are)",
                    style="dim",
                )
            )
            yield Input(
                placeholder="add the-boat boat, skiff: A skiff lies upturned on the shingle.", id="lore-command"
            )
            yield Static(id="lore-said")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("entry", "whose", "keys", "text")
        self._fill()
        self.query_one(Input).focus()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for lid, entry in self.game.pack.lore.items():
            whose = "yours" if lid in self.game.player_lore else "pack"
            state = whose if entry.enabled else f"{whose}, off"
            keys = "always" if entry.always else ", ".join(entry.keywords)
            row = [lid, state, keys, " ".join(entry.content.split())[:80]]
            table.add_row(*(Text(printable(cell)) for cell in row), key=lid)  # a pack's words are not markup

    def on_input_submitted(self, event: Input.Submitted) -> None:
        said = self.query_one("#lore-said", Static)
        try:
            done = lore_command(self.game, event.value)
        except UserFacingError as error:
            said.update(Text(f"✗ {printable(error.render())}", style="bold red"))
            return
        self.changed = self.changed or event.value.strip() != ""
        event.input.clear()
        said.update(Text(printable("\n".join(done))))
        self._fill()

    def action_close(self) -> None:
        self.dismiss(self.changed)
