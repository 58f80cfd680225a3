"""Model output and pack text are untrusted: nothing in them may drive the terminal.

Text is shown only after `printable()`: C0 and C1 control characters (ESC starts every terminal
escape sequence; C1 CSI/OSC/DCS do the same on 8-bit terminals) and the bidirectional overrides
that can disguise text are replaced by a visible placeholder; newlines and tabs stay.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PLACEHOLDER = "\ufffd"


def printable(text: str) -> str:
    return _UNSAFE.sub(PLACEHOLDER, text)
