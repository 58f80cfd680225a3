"""The transcript: one widget per line, speaker names in their colours, text streaming in."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ..untrusted_text import printable


class LineView(Static):
    """One line of the story. Narration is shown in italics without a name, as in a novel."""

    DEFAULT_CSS = """
    LineView {
        margin-bottom: 1;
    }
    LineView.narration {
        color: $text-muted;
    }
    """

    def __init__(self, speaker_name: str | None, colour: str, text: str = "", *, narration: bool = False) -> None:
        super().__init__()
        self.speaker_name = speaker_name
        self.colour = colour
        self.text = text
        self.narration = narration
        self._refresh_text()

    def set_speaker(self, speaker_name: str, colour: str, *, narration: bool) -> None:
        self.speaker_name, self.colour, self.narration = speaker_name, colour, narration
        self.set_class(narration, "narration")
        self._refresh_text()

    def append(self, piece: str) -> None:
        self.set_text(self.text + piece)

    def set_text(self, text: str) -> None:
        self.text = text
        self._refresh_text()

    def _refresh_text(self) -> None:
        body = Text(printable(self.text), style="italic" if self.narration else "")
        if self.speaker_name is None:
            self.update(Text.assemble(("…", "dim"), " ", body))
        elif self.narration:
            self.update(body)
        else:
            self.update(Text.assemble((f"{printable(self.speaker_name)}: ", f"bold {self.colour}"), body))


class Transcript(VerticalScroll):
    """The story's lines, anchored: it keeps to the newest line as lines come and grow, until the
    reader scrolls up (scrolling back to the end anchors it again)."""

    # An anchored widget scrolls its content's end to its bottom edge, so content shorter than the
    # transcript would sit at the bottom; the lines' box is at least as tall, so a short story starts at the top.
    DEFAULT_CSS = """
    Transcript {
        padding: 0 1;
        scrollbar-gutter: stable;
    }
    Transcript > #lines {
        height: auto;
        min-height: 100%;
    }
    """

    def compose(self) -> ComposeResult:
        yield Vertical(id="lines")

    def on_mount(self) -> None:
        self.anchor()

    def add(self, lines: Iterable[LineView]) -> None:
        self.query_one("#lines").mount_all(lines)

    def replace(self, lines: Iterable[LineView]) -> None:
        box = self.query_one("#lines")
        box.remove_children()
        box.mount_all(lines)
