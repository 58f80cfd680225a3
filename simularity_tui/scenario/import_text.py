"""Text and data from a stranger's card or lorebook, made fit for a pack, with a note of what changed.

Card and lorebook imports share this: every text loses its control characters (a card could
otherwise write terminal escapes into the pack and onto a screen) and is cut to the schema's limits;
kept data becomes TOML that stays shallow and short-keyed; and identifiers are made from names. What
is cleaned or cut is remembered, so the person importing is told once, not per entry.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar

from ..text_rules import text_problem, without_controls
from .macros import expand, normalise
from .schema import MAX_TEXT

KEPT_DEPTH = 8  # kept data nested deeper than this is kept as JSON text (TOML headers stay short)
MAX_KEPT_KEY = 128  # kept data with a longer key is kept as JSON text too
MAX_KEPT_BYTES = 256 << 10  # kept data per character or lore entry, as JSON
_FIELD_NAMES = {"lore": "a lore entry", "greetings": "a greeting", "mes_example": "an example dialogue"}
_SURROGATE = re.compile("[\ud800-\udfff]")

_Item = TypeVar("_Item")


class Cleaner:
    """Makes a stranger's text and data fit for a pack, remembering what it cleaned and cut.

    `char` is the name `{{char}}` becomes (None: it stays a macro); `{{user}}` always stays one, as
    the player's name is only known when the game starts.
    """

    def __init__(self, *, char: str | None = None, source: str = "card") -> None:
        self.char = char
        self.source = source  # "card" or "lorebook": how warnings name what was read
        self.cleaned: list[str] = []  # the fields control characters were removed from
        self.cuts: Counter[str] = Counter()  # what was cut or left out, and how often

    def warnings(self) -> Iterator[str]:
        if self.cleaned:
            fields = ", ".join(dict.fromkeys(self.cleaned))
            yield f"removed control characters (terminal escapes and the like) from the {self.source}'s {fields}"
        for what, count in self.cuts.items():
            yield what if count == 1 else f"{what} ({count:,} times)"

    def capped(self, items: list[_Item], limit: int, what: str) -> list[_Item]:
        """The first `limit` of `items`, telling of the rest when there are more."""
        if len(items) > limit:
            self.cuts[f"left out {len(items) - limit} of the {self.source}'s {len(items)} {what}"] += 1
        return items[:limit]

    # -- text --

    def clean(self, value: str, field: str, *, keep_newlines: bool = True) -> str:
        if text_problem(value.replace("\r\n", "\n")):
            self.cleaned.append(field)
        # JSON may escape half a surrogate pair ("\ud800"), which no UTF-8 file can hold.
        return without_controls(_SURROGATE.sub("\ufffd", value), keep_newlines=keep_newlines)

    def line(self, value: str, field: str, limit: int) -> str:
        """A name, a keyword or a tag: one line of printable text, not padded, at most `limit` long."""
        return self.clean(value, field, keep_newlines=False).strip()[:limit].rstrip()

    def text(self, value: str, field: str) -> str:
        """Text for the pack: clean, `{{char}}` resolved (when the character is known), at most MAX_TEXT long."""
        cleaned = self.clean(value, field)
        # Cut before resolving (a name may be MAX_NAME characters), but not below what can resolve to
        # MAX_TEXT: `{{char}}` is 8 characters and the name may be 1.
        text = expand(normalise(cleaned[: 8 * MAX_TEXT]), user="{{user}}", char=self.char)
        if len(text) > MAX_TEXT:
            what = _FIELD_NAMES.get(field) or f"the {self.source}'s {field}"
            self.cuts[f"cut {what} to {MAX_TEXT:,} characters"] += 1
        return text[:MAX_TEXT]

    # -- kept data --

    def kept(self, value: object, field: str) -> dict[str, Any]:
        """Data kept as TOML can hold it, or nothing when it is too large to keep."""
        if not isinstance(value, dict) or not value:
            return {}
        size = len(json.dumps(value, ensure_ascii=False, default=str))
        if size > MAX_KEPT_BYTES:
            self.cuts[f"left out {size >> 10:,} KiB of the {self.source}'s {field} data: more than a pack keeps"] += 1
            return {}
        table = self.toml_value(value, field, depth=0)
        return table if isinstance(table, dict) else {"json": table}

    def toml_value(self, value: Any, field: str, *, depth: int) -> Any:
        """JSON as TOML can hold it: no nulls, clean text, 64-bit integers, shallow and short-keyed tables."""
        if isinstance(value, dict | list) and (depth >= KEPT_DEPTH or _long_keys(value)):
            return json.dumps(self.plain(value, field), ensure_ascii=False)  # deep data, kept as its JSON text
        if isinstance(value, dict):
            return {
                self.clean(str(key), field): self.toml_value(item, field, depth=depth + 1)
                for key, item in value.items()
                if item is not None
            }
        if isinstance(value, list):
            return [self.toml_value(item, field, depth=depth + 1) for item in value if item is not None]
        if isinstance(value, str):
            return self.clean(value, field)
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)  # TOML integers are 64-bit
        return value

    def plain(self, value: Any, field: str) -> Any:
        """JSON data with clean text, for keeping as JSON text (its depth is bounded by the reader)."""
        if isinstance(value, dict):
            return {self.clean(str(k), field): self.plain(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(item, field) for item in value]
        return self.clean(value, field) if isinstance(value, str) else value


def _long_keys(value: dict[str, Any] | list[Any]) -> bool:
    return isinstance(value, dict) and any(len(str(key)) > MAX_KEPT_KEY for key in value)


class Ids:
    """Identifiers made from names, each once: a name met again gets -2, -3, … (in constant time)."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken = set(taken or ())
        self.next: dict[str, int] = {}

    def make(self, text: str, fallback: str) -> str:
        base = slug(text) or fallback
        candidate, number = base, self.next.get(base, 2)
        while candidate in self.taken:
            candidate, number = f"{base}-{number}", number + 1
        self.next[base] = number
        self.taken.add(candidate)
        return candidate


def slug(text: str) -> str:
    """`text` as the start of an identifier: lower-case letters and digits joined by `-` (maybe empty)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
