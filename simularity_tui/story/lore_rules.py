"""The rules a matched lore entry passes before its note comes in: timers (delay, cooldown, sticky),
groups, probability, and the token budget.

Everything here is worked out from the story itself: the timers from which lines brought each
entry in (`Line.notes`), the draws from a seed and the line's number. So undo, regenerate and a
resumed save all see the same lore as the line that was first written, with no state of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..scenario.lore_index import group_names
from ..scenario.schema import LoreEntry, Pack
from .lore_types import Dropped, Firing
from .tree import Line


@dataclass
class History:
    """What earlier lines brought in: the entries whose notes the window still holds, and the line
    each entry last came in on."""

    present: set[str] = field(default_factory=set)
    # lore id -> the 1-based line its stay began on: the last line that brought it in, unless that
    # line only brought it back during a stay (its sticky lines, after the window let it go).
    last: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, pack: Pack, lines: Sequence[Line], window_start: int, reach: int) -> History:
        """From `lines`, looking back no further than the window and twice `reach` lines (the
        longest sticky + cooldown of the pack: a stay that ends in reach began at most a sticky
        before): a long story costs no more than a short one."""
        history = cls()
        first = max(0, min(window_start, len(lines) - 2 * reach))
        for number in range(first, len(lines)):
            for lid in lines[number].notes:
                began = history.last.get(lid)
                entry = pack.lore.get(lid)
                if began is None or entry is None or number + 1 > began + entry.sticky:
                    history.last[lid] = number + 1
                if number >= window_start:
                    history.present.add(lid)
        return history


def draw(seed: str, line: int, name: str) -> float:
    """A number in [0, 100), the same for the same seed, line and name: a regenerated line draws as
    the first one did."""
    digest = hashlib.blake2b(f"{seed}\0{line}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / (1 << 64) * 100


def refused_by_probability(entry: LoreEntry, lid: str, seed: str, line: int) -> Dropped | None:
    if entry.probability >= 100:
        return None
    drawn = draw(seed, line, lid)
    if drawn < entry.probability:
        return None
    return Dropped(lid, "probability", f"drew {drawn:.0f} against its probability of {entry.probability}%")


def blocked_by_timer(entry: LoreEntry, lid: str, line: int, history: History, *, sticky: bool) -> Dropped | None:
    """Why the delay or the cooldown keeps the entry out of line `line` (None when neither does)."""
    if line - 1 < entry.delay:
        return Dropped(lid, "delay", f"waits until the story has {entry.delay} lines (it has {line - 1})")
    last = history.last.get(lid)
    if sticky or not entry.cooldown or last is None:
        return None
    free = last + entry.sticky + entry.cooldown  # the last line of its cooldown
    if last + entry.sticky < line <= free:
        return Dropped(lid, "cooldown", f"came in on line {last}; it may come in again from line {free + 1}")
    return None


def sticky_firings(pack: Pack, history: History, line: int) -> Iterator[Firing]:
    """Entries still within `sticky` lines of the line that brought them in: in without keys."""
    for lid, last in history.last.items():
        entry = pack.lore.get(lid)
        if entry is not None and entry.enabled and not entry.always and line <= last + entry.sticky:
            yield Firing(lid, "sticky", None, None, last + entry.sticky)


def contest_groups(
    pack: Pack, fresh: Sequence[Firing], taken: Mapping[str, str], seed: str, line: int
) -> dict[str, Dropped]:
    """The losers among `fresh`: in each group one entry wins, unless an entry already in (`taken`:
    group -> entry) holds it. Sticky entries win first; else one is drawn by `group_weight`."""
    members: dict[str, list[Firing]] = {}
    for firing in fresh:
        for name in group_names(pack.lore[firing.entry]):
            members.setdefault(name, []).append(firing)
    losers: dict[str, Dropped] = {}
    for name, group in members.items():
        pool = [firing for firing in group if firing.entry not in losers]
        if name in taken:
            winner, detail = taken[name], f"'{taken[name]}' of the group '{name}' is in already"
        elif pool:
            winner = _pick(pack, [f for f in pool if f.via == "sticky"] or pool, draw(seed, line, f"group {name}"))
            detail = f"'{winner}' won the group '{name}'"
        else:
            continue
        for firing in pool:
            if firing.entry != winner:
                losers[firing.entry] = Dropped(firing.entry, "group", detail)
    return losers


def _pick(pack: Pack, pool: Sequence[Firing], drawn: float) -> str:
    weights = [pack.lore[firing.entry].group_weight for firing in pool]
    target = drawn / 100 * sum(weights)
    total = 0
    for firing, weight in zip(pool, weights):
        total += weight
        if target < total:
            return firing.entry
    return pool[-1].entry


def fit_budget(
    pack: Pack,
    fired: Sequence[Firing],
    held: set[str],
    tokens: Callable[[str], int],
    budget: int,
    position: Callable[[str], int],
) -> tuple[list[Firing], list[Dropped]]:
    """The notes that fit `budget` tokens, kept whole from the highest order down (ties: the entry
    declared first); the first is kept even alone over the budget (the prompt shortens it). Then an
    entry brought in by recursion leaves with the entry whose content brought it (`held`: the
    entries the window holds already)."""
    ranked = sorted(fired, key=lambda firing: (-pack.lore[firing.entry].order, position(firing.entry)))
    used = 0
    fits: set[str] = set()
    dropped: list[Dropped] = []
    for firing in ranked:
        cost = tokens(firing.entry)
        if not fits or used + cost <= budget:
            used += cost
            fits.add(firing.entry)
        else:
            detail = f"its note takes {cost} tokens; {used} of the {budget} are taken by notes of higher order"
            dropped.append(Dropped(firing.entry, "budget", detail))
    for firing in fired:  # in the order they came in: an entry before those it brought in
        if firing.entry in fits and firing.via == "recursion" and firing.source not in fits | held:
            fits.discard(firing.entry)
            dropped.append(Dropped(firing.entry, "budget", f"brought in by '{firing.source}', which did not fit"))
    return [firing for firing in fired if firing.entry in fits], dropped
