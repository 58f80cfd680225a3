"""What text from outside (packs, cards, settings, the player's input) may hold.

Text reaches the model's prompt, its grammars and the player's screen. Control characters have no
place in any of them: a NUL cuts a grammar short, an ESC or a C1 control starts a terminal escape
sequence, and a carriage return rewrites a line on screen. Text may keep newlines and tabs; a
name (a character, a scene, an outfit, a keyword) is one line of printable text, because it is
written into grammars and into the head of every line (`Name (21:40): …`).

These checks refuse; `untrusted_text.printable()` is the other half, for what is shown (model
output above all, which nothing can refuse).
"""

from __future__ import annotations

import re

# C0 controls but newline and tab, DEL, and the C1 controls (0x80-0x9f: CSI, OSC, DCS on 8-bit terminals).
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAME_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _describe(char: str) -> str:
    names = {"\n": "a newline", "\t": "a tab", "\r": "a carriage return", "\x00": "a NUL", "\x1b": "an ESC"}
    return names.get(char, f"the control character U+{ord(char):04X}")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be text of a pack, a card or a setting (None when it can)."""
    found = _TEXT_CONTROL.search(value)
    if found is None:
        return None
    return f"has {_describe(found.group())} at character {found.start() + 1}; text may hold no control characters"


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a name (None when it can): one line of printable text, not padded."""
    if problem := line_problem(value, what="a name"):
        return problem
    if value != value.strip():
        return "starts or ends with a space; a name is written into every line's head"
    return None


def line_problem(value: str, *, what: str) -> str | None:
    """Why `value` cannot be `what` (None when it can): one line of printable text."""
    found = _NAME_CONTROL.search(value)
    if found is not None:
        return f"has {_describe(found.group())} at character {found.start() + 1}; {what} is one line of printable text"
    return None


def without_controls(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with its control characters removed: newlines and tabs kept (CRLF becomes LF), or,
    with `keep_newlines=False`, the text made one line (as `one_line`)."""
    if not keep_newlines:
        return one_line(text)
    return _TEXT_CONTROL.sub("", text.replace("\r\n", "\n"))


def one_line(text: str) -> str:
    """What a player typed, as one line of text: control characters removed, whitespace runs made
    one space (a pasted escape sequence must not reach the prompt, the save or the screen)."""
    return " ".join(_NAME_CONTROL.sub(" ", text).split())
