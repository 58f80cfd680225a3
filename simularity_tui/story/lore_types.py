"""What a lore scan finds for one line (story/lore.py): the entries it brings in, the ones the
prompt already holds, and the ones left out, each with why, for the prompt inspector and the lore
debugger as much as for the prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Via = Literal["key", "recursion", "sticky"]
Why = Literal["budget", "probability", "group", "cooldown", "delay", "timeout"]


@dataclass(frozen=True)
class Firing:
    """An entry whose note the line brings in."""

    entry: str  # the lore id
    via: Via
    key: str | None  # the key that matched, as written (None when sticky)
    source: str | None  # via key: "line N" (1-based story line); via recursion: the entry whose content matched
    until: int | None  # sticky: the last line (1-based) it stays in for; else None


@dataclass(frozen=True)
class Dropped:
    """An entry that would have come in, and why it did not."""

    entry: str
    why: Why
    detail: str  # for people: "came in on line 4; it may come in again from line 9", …


@dataclass(frozen=True)
class LoreScan:
    line: int  # the 1-based number of the line about to be written
    fired: tuple[Firing, ...]  # entries whose notes this line brings in, in prompt order
    kept: tuple[str, ...]  # entries the window still holds (the model reads their note): no new note
    dropped: tuple[Dropped, ...]
    seconds: float  # time spent matching (the bench reports it)
