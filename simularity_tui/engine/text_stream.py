"""From token bytes to text that is safe to stream: whole characters, and no part of a stop string.

A token may end in the middle of a UTF-8 character (Gemma splits many emoji and CJK characters),
and a stop string may arrive over several tokens. Both are held back until they resolve, so that
what is streamed is exactly what the tokens decode to, up to the stop string.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextAssembler:
    def __init__(self, stop: Sequence[str] = (), *, skip_bytes: int = 0) -> None:
        """`skip_bytes`: leading bytes the reader already has (text re-written by token healing)."""
        self.skip_bytes = skip_bytes
        self._to_skip = skip_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = [stop_string for stop_string in stop if stop_string]
        self._held = ""  # decoded, not yet streamed: it may be the start of a stop string
        self.text = ""  # everything streamed so far
        self.stop_string: str | None = None

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be streamed now (often "")."""
        if self.stop_string is not None:
            return ""
        if self._to_skip:
            skipped = min(self._to_skip, len(piece))
            piece, self._to_skip = piece[skipped:], self._to_skip - skipped
        pending = self._held + self._decoder.decode(piece)
        found = [(pending.find(s), s) for s in self._stops if s in pending]
        if found:
            index, self.stop_string = min(found)
            return self._release(pending[:index], held="")
        keep = max((self._overlap(pending, s) for s in self._stops), default=0)
        return self._release(pending[: len(pending) - keep], held=pending[len(pending) - keep :])

    def finish(self) -> str:
        """The end of the stream: release what was held (a partial stop string is just text)."""
        if self.stop_string is not None:
            return ""
        return self._release(self._held + self._decoder.decode(b"", final=True), held="")

    def _release(self, text: str, *, held: str) -> str:
        self._held = held
        self.text += text
        return text

    @staticmethod
    def _overlap(text: str, stop: str) -> int:
        """Length of the longest end of `text` that is a beginning of `stop`."""
        for size in range(min(len(text), len(stop) - 1), 0, -1):
            if stop.startswith(text[-size:]):
                return size
        return 0
