"""Lore: which entries of the pack the next line brings into the prompt, and why (or why not).

An entry comes in when one of its keys occurs in the last lines (its scan depth), its secondary
keys agree, and the rules let it (lore_rules.py: delay, cooldown, group, probability); then the
content of what came in is scanned in turn for other entries (recursion, a few steps at most).
Last, the notes must fit the lore budget. An entry whose note the window still holds is `kept`:
the model reads it already, and the prompt only grows at its end, so it is never noted twice.
Always-on entries are not here: they sit in the pinned block.

The matching itself (keys, and the index that makes thousands of entries cheap) lives in
scenario/lore_keys.py and scenario/lore_index.py, shared with `simularity check`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ..scenario.lore_index import LoreIndex, group_names, lore_index
from ..scenario.lore_keys import SCAN_REGEX_SECONDS, Haystack, regex_budget
from ..scenario.lore_match import Match, TimedOut, match_entry
from ..scenario.macros import expand
from ..scenario.schema import Pack
from .lore_rules import (
    History,
    blocked_by_timer,
    contest_groups,
    fit_budget,
    refused_by_probability,
    sticky_firings,
)
from .lore_types import Dropped, Firing, LoreScan
from .tree import Line
from .writing import note_text

__all__ = ["Dropped", "Firing", "LoreScan", "lore_seed", "scan_lore"]

log = logging.getLogger("simularity")
SEED_LINES = 8  # lines of the story that seed a line's draws


def scan_lore(
    pack: Pack,
    lines: Sequence[Line],
    *,
    window_start: int,
    count_tokens: Callable[[str], int],
    budget: int,
    seed: str,
) -> LoreScan:
    """The lore the line after `lines` brings in. `window_start`: the index of the first line the
    model still reads (earlier notes are gone from its view); `budget`: tokens for all the notes;
    `seed`: with the line's number, decides every draw (probability, groups)."""
    started = time.perf_counter()
    scan = _Scan(pack, lines, window_start, seed)
    with regex_budget(SCAN_REGEX_SECONDS):
        scan.run()
    seconds = time.perf_counter() - started
    fired, over = fit_budget(
        pack,
        [firing for firing in scan.activated.values() if firing.entry not in scan.kept],
        set(scan.kept),
        lambda lid: count_tokens(note_text(pack, [lid])),
        budget,
        lambda lid: scan.index.entries[lid].position,
    )
    fired.sort(key=lambda firing: (pack.lore[firing.entry].order, scan.index.entries[firing.entry].position))
    return LoreScan(scan.line, tuple(fired), tuple(scan.kept), (*scan.dropped.values(), *over), seconds)


def lore_seed(pack: Pack, episode: str, lines: Sequence[Line]) -> str:
    """The seed of the next line's draws: its story so far (the last few lines), so a regenerated
    line draws as the first did, and another story draws otherwise."""
    recent = "\n".join(f"{line.speaker}: {line.text}" for line in lines[-SEED_LINES:])
    return f"{pack.id}/{episode}/" + hashlib.blake2b(recent.encode(), digest_size=8).hexdigest()


class _Scan:
    """One scan's state: what has come in so far (in the order it came), and what was left out."""

    def __init__(self, pack: Pack, lines: Sequence[Line], window_start: int, seed: str) -> None:
        self.pack = pack
        self.index: LoreIndex = lore_index(pack)
        self.lines = lines
        self.line = len(lines) + 1
        self.seed = seed
        self.history = History.of(pack, lines, window_start, self.index.reach)
        self.activated: dict[str, Firing] = {}  # came in (budget still to come), or kept
        self.kept: list[str] = []
        self.dropped: dict[str, Dropped] = {}
        self._haystacks: dict[int, Haystack] = {}

    def run(self) -> None:
        step = [*self._from_lines(), *sticky_firings(self.pack, self.history, self.line)]
        for depth in range(self.pack.lore_scan.recursion + 1):
            came_in = self._admit(step)
            if depth == self.pack.lore_scan.recursion or not came_in:
                break
            step = self._from_contents(came_in)

    # -- finding candidates ---------------------------------------------------------------------

    def _from_lines(self) -> list[Firing]:
        """Entries a key of which occurs in the lines their scan depth looks at."""
        deepest = max(self.index.depths, default=0)
        if deepest == 0:
            return []
        found = []
        for lid, numbers in self.index.candidates(self._haystack(deepest)).items():
            depth = self.index.entries[lid].depth
            if depth > 0 and (match := self._match(lid, numbers, self._haystack(depth))) is not None:
                found.append(Firing(lid, "key", match.key, match.label, None))
        return self._in_pack_order(found)

    def _from_contents(self, came_in: Iterable[Firing]) -> list[Firing]:
        """Entries a key of which occurs in the content of entries that just came in."""
        user = self.pack.player.name
        segments = [(f.entry, expand(self.pack.lore[f.entry].content, user=user)) for f in came_in]
        haystack = Haystack([(lid, text) for lid, text in segments if self.pack.lore[lid].recurse])
        found = []
        for lid, numbers in self.index.candidates(haystack).items():
            if lid in self.activated or lid in self.dropped or not self.pack.lore[lid].by_recursion:
                continue
            if (match := self._match(lid, numbers, haystack)) is not None:
                found.append(Firing(lid, "recursion", match.key, match.label, None))
        return self._in_pack_order(found)

    def _match(self, lid: str, numbers: Sequence[int], haystack: Haystack) -> Match | None:
        found = match_entry(self.index.entries[lid], self.pack.lore[lid].logic, numbers, haystack)
        if isinstance(found, TimedOut):
            log.warning("lore '%s': the key %r took too long on line %d: left out", lid, found.key, self.line)
            self.dropped[lid] = Dropped(lid, "timeout", f"the key {found.key!r} took too long: left out")
            return None
        return found

    def _haystack(self, depth: int) -> Haystack:
        """The last `depth` lines, each headed by its speaker's name when the pack says so."""
        if depth not in self._haystacks:
            names = self.pack.lore_scan.include_names
            first = max(0, len(self.lines) - depth)
            self._haystacks[depth] = Haystack(
                [
                    (f"line {n + 1}", f"{self.pack.speaker_name(line.speaker)}: {line.text}" if names else line.text)
                    for n, line in enumerate(self.lines[first:], start=first)
                ]
            )
        return self._haystacks[depth]

    def _in_pack_order(self, found: list[Firing]) -> list[Firing]:
        return sorted(found, key=lambda firing: self.index.entries[firing.entry].position)

    # -- letting them in ------------------------------------------------------------------------

    def _admit(self, step: Sequence[Firing]) -> list[Firing]:
        """Those of `step` that come in (or are kept): the window's own first, then the timers,
        the groups and the draws decide."""
        came_in: list[Firing] = []
        fresh: list[Firing] = []
        for firing in step:
            lid = firing.entry
            if lid in self.activated or lid in self.dropped:
                continue
            if lid in self.history.present:
                self.activated[lid] = firing
                self.kept.append(lid)
                came_in.append(firing)
            elif blocked := blocked_by_timer(
                self.pack.lore[lid], lid, self.line, self.history, sticky=firing.via == "sticky"
            ):
                self.dropped[lid] = blocked
            else:
                fresh.append(firing)
        taken = {name: lid for lid in self.activated for name in group_names(self.pack.lore[lid])}
        self.dropped.update(losers := contest_groups(self.pack, fresh, taken, self.seed, self.line))
        for firing in fresh:
            if firing.entry not in losers and self._drawn(firing):
                self.activated[firing.entry] = firing = self._with_until(firing)
                came_in.append(firing)
        return came_in

    def _drawn(self, firing: Firing) -> bool:
        """Whether the entry's probability lets it in (a sticky entry is in without a draw)."""
        if firing.via == "sticky":
            return True
        refused = refused_by_probability(self.pack.lore[firing.entry], firing.entry, self.seed, self.line)
        if refused is not None:
            self.dropped[firing.entry] = refused
        return refused is None

    def _with_until(self, firing: Firing) -> Firing:
        sticky = self.pack.lore[firing.entry].sticky
        return replace(firing, until=self.line + sticky) if sticky and firing.via != "sticky" else firing
