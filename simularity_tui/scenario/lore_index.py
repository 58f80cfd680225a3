"""Every keyed lore entry of a pack, indexed so that a text is checked against thousands of entries
at once: built once per pack, then each scan looks up the text's words instead of trying each key.

Whole-word keys are found by one of their runs of word characters (the text's runs are a set, so
each lookup is one hash probe), other plain keys by their first few characters; only regular
expressions and very short keys are tried on every text. The index proposes candidates; each is
then checked properly (`Key.find`), on the lines its own entry looks at.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import regex

from .lore_keys import Haystack, Key, make_key, regex_parts
from .macros import expand
from .schema import LoreEntry, Pack

_CACHE_SIZE = 8  # packs indexed at once (a hot reload, or a test, makes a new pack object)


@dataclass(frozen=True)
class EntryKeys:
    primary: tuple[Key, ...]
    secondary: tuple[Key, ...]
    depth: int  # the lines its keys are looked for in (its own scan_depth, or the pack's)
    position: int  # where the pack declares it: ties in order go to the earlier one


class LoreIndex:
    """The keyed entries of one pack (enabled, not always-on), and their keys by anchor."""

    def __init__(self, pack: Pack) -> None:
        self.entries: dict[str, EntryKeys] = {}
        self._anchored: dict[tuple[str, bool, str], list[tuple[str, int]]] = defaultdict(list)
        self._tried_always: list[tuple[str, int]] = []  # (entry, key index) with no anchor
        user = pack.player.name if any(c.player for c in pack.characters.values()) else "{{user}}"
        for position, (lid, entry) in enumerate(pack.lore.items()):
            if entry.enabled and not entry.always:
                self._add(lid, entry, position, pack, user)
        self.depths = sorted({keys.depth for keys in self.entries.values()})
        self._kinds = sorted({(kind, case) for kind, case, _text in self._anchored})
        # The furthest back a timer looks: no line before that matters to sticky or cooldown.
        self.reach = max((e.sticky + e.cooldown for e in pack.lore.values() if e.enabled), default=0)

    def _add(self, lid: str, entry: LoreEntry, position: int, pack: Pack, user: str) -> None:
        scan = pack.lore_scan
        case = scan.case_sensitive if entry.case_sensitive is None else entry.case_sensitive
        whole = scan.whole_words if entry.whole_words is None else entry.whole_words

        def key(source: str) -> Key:
            # In a /regex/ key the player's name is text to find, not a pattern: "Ash (ghost)" or "A.J." must
            # match themselves only, and a name can never make a key that backtracks without end.
            # Whether a key is a regular expression is decided as the author wrote it, before any name.
            pattern = regex_parts(source) is not None
            name = regex.escape(user) if pattern else user
            return make_key(expand(source, user=name), case_sensitive=case, whole_words=whole, pattern=pattern)

        primary = tuple(key(source) for source in entry.keywords)
        depth = scan.depth if entry.scan_depth is None else entry.scan_depth
        self.entries[lid] = EntryKeys(primary, tuple(key(source) for source in entry.secondary), depth, position)
        for number, each in enumerate(primary):
            anchor = each.anchor
            if anchor is None:
                self._tried_always.append((lid, number))
            else:
                self._anchored[(anchor[0], each.case_sensitive, anchor[1])].append((lid, number))

    def candidates(self, haystack: Haystack) -> dict[str, list[int]]:
        """The entries whose primary keys may occur in `haystack`, with those keys' indexes in
        declared order: every key whose anchor the text holds, and every key without one."""
        found: dict[str, list[int]] = defaultdict(list)
        for lid, number in self._proposed(haystack):
            found[lid].append(number)
        for numbers in found.values():
            numbers.sort()
        return found

    def _proposed(self, haystack: Haystack) -> Iterator[tuple[str, int]]:
        yield from self._tried_always
        for kind, case in self._kinds:
            pieces = haystack.runs(case) if kind == "run" else haystack.grams(case)
            for piece in pieces:
                yield from self._anchored.get((kind, case, piece), ())


def group_names(entry: LoreEntry) -> list[str]:
    """An entry's groups: one name, or several separated by commas (as SillyTavern writes them)."""
    return [name.strip() for name in entry.group.split(",") if name.strip()]


_indexes: list[tuple[Pack, LoreIndex]] = []


def lore_index(pack: Pack) -> LoreIndex:
    """The index of `pack`, built on its first use: a pack is frozen, so it is kept by identity."""
    for indexed, index in _indexes:
        if indexed is pack:
            return index
    index = LoreIndex(pack)
    _indexes.insert(0, (pack, index))
    del _indexes[_CACHE_SIZE:]
    return index
