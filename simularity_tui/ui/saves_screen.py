"""A pack's saves: load one, delete one, branch one into a new save, export one as Markdown."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from ..errors import UserFacingError
from ..scenario import LoadedPack
from ..story.saves import branch_save, delete_save, export_path, export_save, save_path, save_summaries
from ..untrusted_text import printable
from .messages import PlayRequested
from .notify import notify_plain


class SavesScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "load", "Load"),
        Binding("d", "delete", "Delete"),
        Binding("b", "branch", "Branch"),
        Binding("e", "export", "Export"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, loaded: LoadedPack) -> None:
        super().__init__()
        self.loaded = loaded
        self._confirm_delete: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"Saves of {printable(self.loaded.pack.name)}", style="bold"), id="saves-title")
        yield DataTable(id="saves", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="Name of the new branch, then Enter", id="branch-name", classes="hidden")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Saves"
        table = self.query_one(DataTable)
        table.add_columns("save", "last played", "lines", "where")
        self.refresh_table()
        table.focus()

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for save in save_summaries(self.loaded.pack.id):
            played = save.last_played or "unreadable"
            lines = "?" if save.lines is None else str(save.lines)
            table.add_row(Text(printable(save.name)), played, lines, Text(str(save.path), style="dim"), key=save.name)
        if not table.row_count:
            self.query_one("#saves-title", Static).update(
                Text(f"No saves of {printable(self.loaded.pack.name)} yet: play it from the library.")
            )

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_load()  # Enter on a row: the table takes the key, and says so with this message

    def action_load(self) -> None:
        name = self._selected()
        if name is not None:
            self.post_message(PlayRequested(self.loaded, save=name))

    def action_delete(self) -> None:
        name = self._selected()
        if name is None:
            return
        if self._confirm_delete != name:
            self._confirm_delete = name
            notify_plain(self, f"Press D again to delete '{name}' for good.", title="Delete?")
            return
        self._confirm_delete = None
        try:
            delete_save(save_path(self.loaded.pack.id, name))
        except UserFacingError as error:  # a directory by a save's name, a file we may not remove
            notify_plain(self, error.render(), severity="error")
            return
        notify_plain(self, f"Deleted '{name}'.")
        self.refresh_table()

    def action_branch(self) -> None:
        if self._selected() is not None:
            field = self.query_one("#branch-name", Input)
            field.remove_class("hidden")
            field.value = f"{self._selected()} branch"
            field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        source = self._selected()
        event.input.add_class("hidden")
        self.query_one(DataTable).focus()
        if source is None:
            return
        try:
            target = branch_save(self.loaded.pack.id, source, event.value.strip())
        except UserFacingError as error:  # a name in use or not allowed, a save that cannot be read
            notify_plain(self, error.render(), severity="error")
            return
        notify_plain(self, f"'{target.stem}' branches from '{source}'.", title="Branched")
        self.refresh_table()

    def action_export(self) -> None:
        name = self._selected()
        if name is not None:
            self.export(name)

    @work(exclusive=True, group="export")
    async def export(self, name: str) -> None:
        """A transcript needs the story played out; it is read from the save without the model."""
        try:
            target = export_path(self.loaded.pack.id, name)
            export_save(self.loaded, name, target)
        except UserFacingError as error:
            notify_plain(self, error.render(), severity="error")
            return
        notify_plain(self, f"Written to {target}", title="Exported")

    def action_back(self) -> None:
        field = self.query_one("#branch-name", Input)
        if not field.has_class("hidden"):
            field.add_class("hidden")
            self.query_one(DataTable).focus()
        else:
            self.app.pop_screen()
