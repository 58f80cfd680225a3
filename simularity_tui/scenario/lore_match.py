"""Whether one lore entry's keys hold in a text: a primary key, then its secondary keys under the
entry's logic. A regular expression that runs out of time counts as no match, and is reported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .lore_index import EntryKeys
from .lore_keys import Haystack, Key

LOGIC: dict[str, Callable[[list[bool]], bool]] = {
    "and_any": any,
    "and_all": all,
    "not_any": lambda hits: not any(hits),
    "not_all": lambda hits: not all(hits),
}


@dataclass(frozen=True)
class Match:
    key: str  # the primary key that matched, as written
    label: str  # where: "line N", or the id of the entry whose content it was found in


@dataclass(frozen=True)
class TimedOut:
    key: str  # the regular expression that ran out of time, as written


def match_entry(keys: EntryKeys, logic: str, numbers: Sequence[int], haystack: Haystack) -> Match | TimedOut | None:
    """The first of the primary keys `numbers` (indexes, in declared order) found in `haystack`, when
    the secondary keys agree; `TimedOut` when a regular expression ran out of time and decided it."""
    found: Match | None = None
    late: TimedOut | None = None
    for number in numbers:
        key = keys.primary[number]
        try:
            label = key.where(haystack)
        except TimeoutError:
            late = late or TimedOut(key.source)
            continue
        if label is not None:
            found = Match(key.source, label)
            break
    if found is None:
        return late
    held = secondary_holds(keys.secondary, logic, haystack)
    if isinstance(held, TimedOut):
        return held
    return found if held else None


def secondary_holds(secondary: Sequence[Key], logic: str, haystack: Haystack) -> bool | TimedOut:
    """Whether the secondary keys agree under `logic` (no secondary keys: they do)."""
    if not secondary:
        return True
    hits = []
    for key in secondary:
        try:
            hits.append(key.find(haystack) >= 0)
        except TimeoutError:
            return TimedOut(key.source)
    return LOGIC[logic](hits)
