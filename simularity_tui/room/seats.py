"""Who sits where: each player's character, kept while they are away for the room's grace, and
kept on disk beside the room's save, so that a restarted room gives everyone their place back.

The file also keeps who may not come back (a gm's kick), the characters left silent by players who
went (`on_leave = "silent"`, each with the player it is kept for), and who wrote each player line
(by story node), which the save itself does not say.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic

log = logging.getLogger("simularity.room")

# A restarted room keeps every seat at least this long, whatever the room's grace: the players'
# screens join again within seconds, and nobody should lose their character to a restart.
RESTART_GRACE_S = 120.0


@dataclass
class Seat:
    """A player's place at the table: the character they hold, and until when it is kept for them
    while they are away (None: they are here)."""

    player: str
    character: str
    kept_until: float | None = None

    @property
    def online(self) -> bool:
        return self.kept_until is None


@dataclass
class SeatsKept:
    seats: dict[str, Seat] = field(default_factory=dict)
    silenced: dict[str, str] = field(default_factory=dict)  # character -> the player it stays silent for
    kicked: set[str] = field(default_factory=set)
    authors: dict[int, str] = field(default_factory=dict)  # story node id -> the player who wrote it


def save_seats(path: Path, kept: SeatsKept) -> None:
    document = {
        "seats": {seat.player: seat.character for seat in kept.seats.values()},
        "silenced": kept.silenced,
        "kicked": sorted(kept.kicked),
        "authors": {str(node): player for node, player in kept.authors.items()},
    }
    write_atomic(path, json.dumps(document))


def load_seats(path: Path, players: list[str], characters: set[str], now: float, grace_s: float) -> SeatsKept:
    """The seats of the room's last run, each away and kept a while (the room restarted); an
    unreadable file is told in the log, and everyone sits down afresh."""
    if not path.exists():
        return SeatsKept()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        seats = {str(p): str(c) for p, c in dict(document["seats"]).items()}
        silenced = {str(c): str(p) for c, p in dict(document.get("silenced", {})).items()}
        kicked = {str(p) for p in document.get("kicked", [])}
        authors = {int(node): str(p) for node, p in dict(document.get("authors", {})).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("the seats file %s cannot be read (%s); everyone sits down afresh", path, error)
        return SeatsKept()
    until = now + max(grace_s, RESTART_GRACE_S)
    return SeatsKept(
        {p: Seat(p, c, kept_until=until) for p, c in seats.items() if p in players and c in characters},
        {c: p for c, p in silenced.items() if c in characters},
        kicked & set(players),
        authors,
    )
