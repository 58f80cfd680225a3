"""Model output and pack text are untrusted: nothing in them may drive the terminal.

Text is shown only after `printable()`. C0 control characters (ESC starts every terminal escape
sequence; BEL ends OSC ones) become their Unicode control pictures, so a player sees `␛]52;c;…␇`
instead of having their clipboard written. C1 controls (CSI/OSC/DCS on 8-bit terminals) and the
bidirectional overrides that can disguise text become U+FFFD. Newlines and tabs stay.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PLACEHOLDER = "\ufffd"
_CONTROL_PICTURES = 0x2400  # U+2400 SYMBOL FOR NULL … U+241F; U+2421 SYMBOL FOR DELETE


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(_CONTROL_PICTURES + code)
    return "\u2421" if code == 0x7F else PLACEHOLDER


def printable(text: str) -> str:
    return _UNSAFE.sub(_picture, text)
