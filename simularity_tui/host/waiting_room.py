"""Connections that have not logged in yet: a capped waiting room that, when full, closes the one least
likely to be a player.

A connection costs the host a socket (a file descriptor) and some memory from the moment it is
accepted, before anyone knows who it is. Left uncapped, a thousand idle connections use up the host's
descriptors and no player gets in. Refusing newcomers once a cap is reached would not help either:
whoever holds the idle connections would keep the door shut for everyone. So the room lets every
newcomer in and, when a cap is passed, closes another connection: the one that has got least far
(`progress`, which the server defines: idle, on its way, logging in), and of those the oldest, the one
that has waited longest without getting in. The newcomer itself is never the one closed: it has not
had the time to say anything.

- One address (IPv6: one /64) holds at most `most_per_address`: past that, a newcomer closes one of
  its own address's. An attacker on one address takes their share and then closes only their own
  connections; a player behind the same address as an attacker (one NAT) still gets in, as their
  connection is the newest of that address and closed only if `most_per_address` more come from
  there before it has logged in.
- All addresses together hold at most `most`. A flood from many addresses closes the idle first, and
  a player's connection only if `most` connections arrive before it has got further than they have
  (for `ssh`, to its login request: a fraction of a second, so a flood of hundreds a second, kept up).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

Guest = TypeVar("Guest", bound=Hashable)


class WaitingRoom(Generic[Guest]):
    def __init__(self, most: int, most_per_address: int, progress: Callable[[Guest], int]) -> None:
        """`progress`: how far a guest has got (0: said nothing; higher: further); read when choosing."""
        self.most = most
        self.most_per_address = most_per_address
        self.progress = progress
        self._order = itertools.count()
        self._arrival: dict[Guest, int] = {}
        self._group_of: dict[Guest, str] = {}
        self._groups: dict[str, set[Guest]] = {}

    def __len__(self) -> int:
        return len(self._group_of)

    def enter(self, guest: Guest, address: str) -> list[Guest]:
        """Let `guest` in; return the guests it pushed out (already out of the room): close them."""
        group = address_group(address)
        self._arrival[guest] = next(self._order)
        self._group_of[guest] = group
        mine = self._groups.setdefault(group, set())
        mine.add(guest)
        pushed_out = []
        if len(mine) > self.most_per_address:
            pushed_out.append(self._least_promising(other for other in mine if other != guest))
        while len(self) > self.most:
            pushed_out.append(self._least_promising(other for other in self._group_of if other != guest))
        return pushed_out

    def leave(self, guest: Guest) -> None:
        """`guest` logged in or went away (calling it twice is harmless)."""
        group = self._group_of.pop(guest, None)
        if group is None:
            return
        del self._arrival[guest]
        members = self._groups[group]
        members.discard(guest)
        if not members:
            del self._groups[group]

    def _least_promising(self, candidates: Iterable[Guest]) -> Guest:
        """The one to close, taken out of the room at once (so a second pass never picks it again).

        Not "of the busiest address": an attacker who also floods the address a player shares with them
        would make every closing fall on that address, the player's connection among them."""
        chosen = min(candidates, key=lambda guest: (self.progress(guest), self._arrival[guest]))
        self.leave(chosen)
        return chosen


def address_group(address: str) -> str:
    """What counts as one address: an IPv4 address, or an IPv6 /64 (one home or one server gets a whole
    /64, and could otherwise spread its connections over 2^64 addresses)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
