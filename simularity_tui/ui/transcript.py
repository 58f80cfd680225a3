"""The transcript: one widget per line, speaker names in their colours, text streaming in."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..untrusted_text import printable


class LineView(Static):
    """One line of the story. Narration is shown in italics without a name, as in a novel."""

    DEFAULT_CLASSES = "line"

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
    """Keeps to the newest line while it streams, unless the reader has scrolled up."""

    def add(self, line: LineView) -> LineView:
        follow = self.is_vertical_scroll_end
        self.mount(line)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)
        return line

    def follow(self) -> None:
        if self.is_vertical_scroll_end or self.max_scroll_y - self.scroll_y <= 3:
            self.scroll_end(animate=False)
