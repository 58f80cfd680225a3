"""The play screen's status line: the scene and who is on stage, the in-story time, the variant,
the model's speed, how full the context is, and what a turn is doing (else the save's name)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from ..untrusted_text import printable


class StatusLine(Static):
    """Each part is a reactive; the line is computed from them and redrawn only when it changes."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 2;
        color: $text-muted;
        background: $panel;
    }
    """

    place = var("")  # the scene, and who is on stage
    clock = var("")  # the in-story time
    variant = var("")  # "variant 2/3", when the last line has several
    speed = var(0.0)  # tokens per second of the last line written
    kv_tokens = var(0)  # how full the context is…
    n_ctx = var(0)  # …of how many tokens
    reread = var(0)  # tokens the next line reads again (the memory or the persona changed); 0 when none
    activity = var("")  # what a turn is doing; empty when none runs
    idle_work = var("")  # what is done while the player reads (story/idle_work.py); empty when nothing
    save = var("")  # the save's name
    line = var("")

    def compute_line(self) -> str:
        parts = [
            self.place,
            self.clock,
            self.variant,
            f"{self.speed:.1f} tok/s" if self.speed else "",
            f"context {self.kv_tokens:,}/{self.n_ctx:,}",
            f"the next line re-reads {self.reread:,} tokens" if self.reread else "",
            self.activity or self.idle_work or f"saved: {self.save}",
        ]
        return " · ".join(part for part in parts if part)

    def watch_line(self, line: str) -> None:
        self.update(Text(printable(line)))  # a pack's names are text, never markup
