"""Adding files to a pack's `include`, in its scenario.toml's own text: the author's layout, comments
and quoting stay as they were.

No TOML writer keeps a file's formatting, so the edit is made in the text: the paths go at the end
of the top-level `include = [...]` array, or a new `include = [...]` line goes in before the first
key. The result is read back and must hold exactly the same data, `include` grown by the paths;
otherwise the edit is refused (`IncludeEditError`) and nothing is written.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

_KEY = re.compile(r"""[ \t]*(include|"include"|'include')[ \t]*=[ \t]*\[""")
_QUOTES = ('"""', "'''", '"', "'")


class IncludeEditError(ValueError):
    """scenario.toml could not be edited safely: the person must add the paths themselves."""


def with_included(text: str, paths: list[str]) -> str:
    """`text` (a scenario.toml) with `paths` added to its `include`."""
    if not paths:
        return text
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    return bom + _edited(text.removeprefix(bom), paths)


def _edited(text: str, paths: list[str]) -> str:
    before = tomllib.loads(text)
    quoted = ", ".join(json.dumps(path, ensure_ascii=False) for path in paths)
    if "include" in before:
        edited = _append(text, quoted)
    else:
        edited = _insert_line(text, f"include = [{quoted}]\n")
    expected: dict[str, Any] = {**before, "include": [*before.get("include", []), *paths]}
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise IncludeEditError("scenario.toml is written in a way this edit does not follow")
    return edited


def _append(text: str, quoted: str) -> str:
    """Add `quoted` at the end of the top-level include array."""
    position = 0
    while position < len(text):
        line_end = text.find("\n", position)
        line_end = len(text) if line_end < 0 else line_end
        line = text[position:line_end]
        if line.lstrip().startswith("["):
            break  # the first table: include was not a top-level key written plainly
        found = _KEY.match(line)
        if found is not None:
            last = _array_last(text, position + found.end())
            separator = "" if text[last - 1] in "[," else ","
            space = "" if text[last - 1] == "[" else " "
            return text[:last] + separator + space + quoted + text[last:]
        position = _skip_value(text, position)
    raise IncludeEditError("the include array was not found where it should be")


def _array_last(text: str, start: int) -> int:
    """Just after the last item (or comma) in the array opened before `start`, skipping strings,
    comments and nested arrays."""
    depth = 1
    last = start
    index = start
    while index < len(text):
        char = text[index]
        if char == "#":
            index = _line_end(text, index)
            continue
        quote = next((q for q in _QUOTES if text.startswith(q, index)), None)
        if quote is not None:
            index = _string_end(text, index, quote)
            last = index
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return last
        if not char.isspace():
            last = index + 1
        index += 1
    raise IncludeEditError("the include array does not end")


def _skip_value(text: str, position: int) -> int:
    """The start of the next line, past a multi-line string or array begun on this one."""
    depth = 0
    index = position
    while index < len(text):
        char = text[index]
        if char == "\n" and depth == 0:
            return index + 1
        if char == "#":
            index = _line_end(text, index)
            continue
        quote = next((q for q in _QUOTES if text.startswith(q, index)), None)
        if quote is not None:
            index = _string_end(text, index, quote)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        index += 1
    return len(text)


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _string_end(text: str, index: int, quote: str) -> int:
    """Just past the string that starts at `index` with `quote`."""
    index += len(quote)
    while index < len(text):
        if quote[0] == '"' and text[index] == "\\":
            index += 2
            continue
        if text.startswith(quote, index):
            end = index + len(quote)
            while len(quote) == 3 and text.startswith(quote[0], end) and end - index < 5:
                end += 1  # """ may end with up to two quotes of the string's own
            return end
        if len(quote) == 1 and text[index] == "\n":
            raise IncludeEditError("a string does not end on its line")
        index += 1
    raise IncludeEditError("a string does not end")


def _insert_line(text: str, line: str) -> str:
    """`line` after the file's opening comments and blank lines, before its first key or table."""
    position = 0
    while position < len(text):
        end = _line_end(text, position)
        stripped = text[position:end].strip()
        if stripped and not stripped.startswith("#"):
            break
        position = end + 1
    position = min(position, len(text))
    prefix = text[:position]
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    return prefix + line + text[position:]
