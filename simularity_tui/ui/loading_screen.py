"""Shown while the model is prepared (first run: joined from its chunks) and loaded."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Label, ProgressBar, Static


class LoadingScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static("Simularity", id="logo")
            yield Label("Loading the model…", id="loading-status")
            yield ProgressBar(total=None, show_eta=False, id="loading-progress")

    def show_status(self, text: str) -> None:
        self.query_one("#loading-status", Label).update(text)

    def show_progress(self, done: int, total: int) -> None:
        self.show_status(f"Preparing the embedded model (first run only): {done >> 20} of {total >> 20} MiB")
        self.query_one("#loading-progress", ProgressBar).update(total=total, progress=done)
