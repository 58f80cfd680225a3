"""A pack's saves: load one, delete one, branch one into a new save, export one as Markdown."""

from __future__ import annotations

import shutil

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from .. import paths
from ..errors import UserFacingError
from ..scenario import LoadedPack
from ..story.saves import delete_save, kv_path, list_saves, save_path, save_summary
from ..untrusted_text import printable
from .screen_base import SimularityScreen


class SavesScreen(SimularityScreen):
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
        for path in list_saves(self.loaded.pack.id):
            updated, lines = save_summary(path)
            table.add_row(Text(printable(path.stem)), updated, lines, Text(str(path), style="dim"), key=path.stem)
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
            self.simularity.play(self.loaded, save=name)

    def action_delete(self) -> None:
        name = self._selected()
        if name is None:
            return
        if self._confirm_delete != name:
            self._confirm_delete = name
            self.notify(printable(f"Press D again to delete '{name}' for good."), title="Delete?", markup=False)
            return
        delete_save(save_path(self.loaded.pack.id, name))
        self._confirm_delete = None
        self.notify(printable(f"Deleted '{name}'."), markup=False)
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
            target = save_path(self.loaded.pack.id, event.value.strip())
        except UserFacingError as error:
            self.notify(printable(error.render()), severity="error", markup=False)
            return
        if target.exists():
            self.notify(printable(f"There is already a save '{target.stem}'."), severity="error", markup=False)
            return
        original = save_path(self.loaded.pack.id, source)
        try:
            shutil.copyfile(original, target)
            if kv_path(original).exists():
                shutil.copyfile(kv_path(original), kv_path(target))
        except OSError as error:  # a save listed but unreadable (a dangling link, say)
            target.unlink(missing_ok=True)
            self.notify(printable(f"Cannot branch from '{source}' ({error.strerror})."), severity="error", markup=False)
            return
        self.notify(printable(f"'{target.stem}' branches from '{source}'."), title="Branched", markup=False)
        self.refresh_table()

    def action_export(self) -> None:
        name = self._selected()
        if name is not None:
            self.export(name)

    @work(exclusive=True, group="export")
    async def export(self, name: str) -> None:
        """A transcript needs the story played out; it is read from the save without the model."""
        from ..story.saves import read_save, transcript_lines

        path = save_path(self.loaded.pack.id, name)
        try:
            saved = read_save(path, self.loaded, model="")
        except UserFacingError as error:
            self.notify(printable(error.render()), severity="error", markup=False)
            return
        target = paths.data_dir() / "exports" / f"{self.loaded.pack.id} - {name}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            transcript_lines(self.loaded.pack, saved.episode, saved.tree.lines(), saved.unlocked), encoding="utf-8"
        )
        self.notify(printable(f"Written to {target}"), title="Exported", markup=False)

    def action_back(self) -> None:
        field = self.query_one("#branch-name", Input)
        if not field.has_class("hidden"):
            field.add_class("hidden")
            self.query_one(DataTable).focus()
        else:
            self.app.pop_screen()
