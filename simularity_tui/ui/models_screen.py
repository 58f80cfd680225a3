"""The model library: the catalogue and the installed models; download one (with progress), cancel,
delete, or choose the one the game plays on.

A download runs in a thread worker (huggingface_hub blocks) and reports by messages; Cancel, or
leaving the screen, stops it between two MiB, keeping what came, and a later download goes on from
there. Nothing is offered until its checks pass (models/pull.py). The choice is written to
`[model] path` in the settings file and applies from the next start, as the settings screen's do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, Static

from ..errors import UserFacingError
from ..model_setting import model_in_use, set_model_path
from ..models import PullStopped, fit, store
from ..models.catalogue import Catalogue, bundled_catalogue, load_catalogue
from ..models.library import Row, pull_target, rows
from ..models.pull import pull
from ..untrusted_text import printable
from .notify import notify_plain

_REPORT_EVERY = 0.1  # seconds between progress messages from the download thread


@dataclass
class PullProgressed(Message):
    phase: str  # "download" or "check"
    done: int
    total: int | None


@dataclass
class PullEnded(Message):
    installed: store.InstalledFile | None
    error: UserFacingError | None = None  # None with no file: stopped (the error says what was kept)


class ModelsScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "pull", "Download", priority=True),  # before the table's own Enter: it is the point
        Binding("c", "cancel", "Cancel download"),
        Binding("u", "use", "Play on it"),
        Binding("d", "delete", "Delete (twice)"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, settings_file: Path | None = None) -> None:
        """`settings_file`: where `[model] path` is written (None: the default settings file)."""
        super().__init__()
        self.settings_file = settings_file
        self.catalogue = Catalogue()
        self.listed: dict[str, Row] = {}
        self._cancel = threading.Event()
        self._pulling: str | None = None  # the spec being pulled
        self._confirm_delete: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="model-details"):
            yield Static(id="model-title")
            yield Static(id="model-about")
            yield Static(id="model-file")
            yield Static(id="model-fit")
        with Horizontal(id="model-pull", classes="hidden"):
            yield Label("", id="model-status")
            yield ProgressBar(total=None, show_eta=False, id="model-progress")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Models"
        table = self.query_one(DataTable)
        table.add_columns("model", "size", "fits", "state")
        self.refresh_rows()
        table.focus()

    def on_unmount(self) -> None:
        self._cancel.set()  # a download stops with the screen; the next one goes on from there

    # -- the list ---------------------------------------------------------------------------------

    def refresh_rows(self) -> None:
        try:
            self.catalogue = load_catalogue()
        except UserFacingError as error:  # the player's own models.toml: say where, list the bundled ones
            notify_plain(self, error.render(), title="models.toml has problems", severity="error")
            self.catalogue = bundled_catalogue()
        memory = fit.machine_memory()
        self.query_one("#model-fit", Static).update(Text(fit.how_judged(memory), style="dim"))
        in_use = model_in_use(self.settings_file)
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        self.listed = {row.spec: row for row in rows(self.catalogue, memory)}
        for spec, row in self.listed.items():
            table.add_row(*_cells(row, in_use), key=spec)
        table.move_cursor(row=max(0, min(cursor, table.row_count - 1)))
        self._show(self._selected())

    def _selected(self) -> Row | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return self.listed.get(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._confirm_delete = None
        self._show(self._selected())

    def _show(self, row: Row | None) -> None:
        title, about, where = (self.query_one(f"#model-{part}", Static) for part in ("title", "about", "file"))
        if row is None:
            return
        context = f" · {row.context:,} tokens" if row.context else ""
        title.update(Text(printable(row.title), style="bold").append(printable(f"{context} · {row.licence}")))
        about.update(Text(printable(row.description)))
        source = f"{row.repo} {row.file}" if row.repo else f"comes with the game: {row.file}"
        place = f"\n{row.path}" if row.path is not None and row.state != "" else ""
        where.update(Text(printable(source + place), style="dim"))

    # -- actions ----------------------------------------------------------------------------------

    def action_pull(self) -> None:
        row = self._selected()
        if row is None:
            return
        if self._pulling is not None:
            notify_plain(self, f"{self._pulling} is downloading; C cancels it.", title="One at a time")
        elif row.state in ("installed", "bundled"):
            notify_plain(self, f"{row.spec} is installed: U plays on it.", title="Installed")
        elif row.repo is not None:
            self._pulling = row.spec
            self._cancel.clear()
            self.query_one("#model-pull").remove_class("hidden")
            self.query_one("#model-status", Label).update(printable(f"Asking the Hub for {row.spec}…"))
            self.download(row.words)

    @work(thread=True, exclusive=True, group="pull")
    def download(self, words: list[str]) -> None:
        """Pull in this thread; progress and the end come back as messages."""
        last = 0.0

        def progressed(phase: str, done: int, total: int | None) -> None:
            nonlocal last
            if time.monotonic() - last >= _REPORT_EVERY or done == total:
                last = time.monotonic()
                self.post_message(PullProgressed(phase, done, total))

        try:
            target = pull_target(self.catalogue, words, fit.machine_memory())
            installed = pull(target, progress=progressed, cancelled=self._cancel.is_set)
        except UserFacingError as error:  # PullStopped too: what was kept, and how to go on
            self.post_message(PullEnded(None, error))
        else:
            self.post_message(PullEnded(installed))

    @on(PullProgressed)
    def _progressed(self, event: PullProgressed) -> None:
        what = "Checking" if event.phase == "check" else "Downloading"
        of = f" of {event.total / 1e6:,.0f}" if event.total else ""
        status = f"{what} {self._pulling}: {event.done / 1e6:,.0f}{of} MB"
        self.query_one("#model-status", Label).update(printable(status))
        self.query_one("#model-progress", ProgressBar).update(total=event.total, progress=event.done)

    @on(PullEnded)
    def _ended(self, event: PullEnded) -> None:
        self._pulling = None
        self.query_one("#model-pull").add_class("hidden")
        self.query_one("#model-status", Label).update("")
        self.query_one("#model-progress", ProgressBar).update(total=None, progress=0)
        if event.installed is not None:
            notify_plain(self, f"{event.installed.file} is installed and checked: U plays on it.", title="Downloaded")
        elif isinstance(event.error, PullStopped):
            notify_plain(self, event.error.render(), title="Download stopped", severity="warning")
        elif event.error is not None:
            notify_plain(self, event.error.render(), title="Download failed", severity="error", timeout=15)
        self.refresh_rows()

    def action_cancel(self) -> None:
        if self._pulling is not None:
            self._cancel.set()
            self.query_one("#model-status", Label).update(printable(f"Stopping {self._pulling}…"))

    def action_use(self) -> None:
        row = self._selected()
        if row is None:
            return
        if row.state not in ("installed", "bundled"):
            notify_plain(self, f"{row.spec} is not installed: Enter downloads it.", title="Not installed")
            return
        try:
            written = set_model_path("" if row.state == "bundled" else str(row.path), self.settings_file)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Cannot set the model", severity="error")
            return
        notify_plain(self, f"The game plays on {row.spec} from its next start ({written}).", title="Model chosen")
        self.refresh_rows()

    def action_delete(self) -> None:
        row = self._selected()
        if row is None or row.repo is None or row.state not in ("installed", "partial"):
            return
        if self._pulling == row.spec:
            notify_plain(self, "It is downloading: C cancels it first.", title="Downloading")
            return
        if self._confirm_delete != row.spec:
            self._confirm_delete = row.spec
            notify_plain(self, f"Press D again to delete {row.spec} ({row.size / 1e9:.2f} GB).", title="Delete?")
            return
        self._delete(row)

    def _delete(self, row: Row) -> None:
        assert row.repo is not None
        self._confirm_delete = None
        in_use = model_in_use(self.settings_file)
        try:
            store.remove(row.repo, row.file)
            if in_use is not None and row.path is not None and in_use.resolve() == row.path.resolve():
                set_model_path("", self.settings_file)
                notify_plain(self, "It was the model in use: the game plays on the embedded model from its next start.")
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Cannot delete", severity="error")
        else:
            notify_plain(self, f"Deleted {row.spec}.", title="Deleted")
        self.refresh_rows()


def _cells(row: Row, in_use: Path | None) -> tuple[Text, str, Text, str]:
    size = f"{'' if row.exact else '~'}{row.size / 1e9:.2f} GB"
    verdict = Text(row.verdict, style={"fits": "green", "tight": "yellow"}.get(row.verdict, "red"))
    state = {"partial": f"partial, {row.kept / 1e6:,.0f} MB"}.get(row.state, row.state)
    if row.path is not None and in_use is not None and row.state and row.path.resolve() == in_use.resolve():
        state += ", in use"
    return Text(printable(row.spec)), size, verdict, state
