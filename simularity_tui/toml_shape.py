"""A linear look at TOML text before tomllib reads it: nesting and dotted keys within bounds.

tomllib recurses once per nested array or inline table, so a few hundred `[` raise RecursionError,
and it takes quadratic time in the parts of one dotted key (30,000 parts: seconds; 1 MiB of them:
minutes). Packs, saves, settings and themes come from anywhere, so both are bounded here, in one
pass over the text, far above what real files do (a few levels, a few parts) and far below trouble.
The scan knows just enough TOML to skip strings and comments; anything it does not understand is
left for tomllib to report.
"""

from __future__ import annotations

import re

MAX_DEPTH = 64  # arrays and inline tables inside one another (tables in headers count as key parts)
MAX_KEY_PARTS = 64  # parts of one dotted key or table header: a.b.c has 3

_SPECIAL = re.compile(r"""\"\"\"|'''|["'#\[\]{}.=,\n]""")
# String ends, matched possessively (no backtracking): linear on any input.
_BASIC_END = re.compile(r'(?:[^"\\\n]|\\.)*+"')
_MULTILINE_BASIC_END = re.compile(r'(?:[^"\\]|\\.|"(?!""))*+"""', re.DOTALL)
_RESETS_KEY = frozenset("=,[]{}\n")


def shape_problem(text: str) -> tuple[int, str] | None:
    """(position, message) of the first place nesting or a dotted key goes past its bound."""
    depth = 0
    parts = 1
    position = 0
    while (found := _SPECIAL.search(text, position)) is not None:
        token, position = found.group(), found.end()
        if token == '"':
            end = _BASIC_END.match(text, position)
            if end is None:
                return None  # an unclosed string: tomllib says where
            position = end.end()
        elif token == "'":
            end_at = text.find("'", position)
            if end_at < 0 or "\n" in text[position:end_at]:
                return None
            position = end_at + 1
        elif token == '"""':
            end = _MULTILINE_BASIC_END.match(text, position)
            if end is None:
                return None
            position = _past_extra_quotes(text, end.end(), '"')
        elif token == "'''":
            end_at = text.find("'''", position)
            if end_at < 0:
                return None
            position = _past_extra_quotes(text, end_at + 3, "'")
        elif token == "#":
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline
        elif token == ".":
            parts += 1
            if parts > MAX_KEY_PARTS:
                return found.start(), f"a dotted key or table name of more than {MAX_KEY_PARTS} parts"
        else:
            if token in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return found.start(), f"arrays or inline tables nested more than {MAX_DEPTH} deep"
            elif token in "]}":
                depth = max(0, depth - 1)
            if token in _RESETS_KEY:
                parts = 1
    return None


def _past_extra_quotes(text: str, position: int, quote: str) -> int:
    """A multi-line string may end with one or two quotes of its own before the closing three."""
    for _ in range(2):
        if text.startswith(quote, position):
            position += 1
    return position
