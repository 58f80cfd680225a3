"""Who may log in: the players' keys and password hashes, and a throttle on addresses that guess.

What counts as one failure of the address it came from: a wrong password (or a password check the
client cut short by sending its next request), and a connection that ends without logging in (once
per connection, however many keys it offered: an OpenSSH client offers every key of its agent in
turn, and a player with many keys must not be shut out before the right one comes). An address with
`max_auth_failures` failures inside `auth_window_seconds` is shut out for `auth_block_seconds`, even
with a right key (a guesser must not learn that it finally guessed right).

A successful login forgets the failures of that user name only, so a player who mistyped their own
password a few times is not punished later, while a player cannot guess at someone else's password
and wipe the count by logging in as themselves between guesses.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

from .config import HostConfig
from .passwords import verify_password

Clock = Callable[[], float]


@dataclass
class Throttle:
    max_failures: int
    window_s: float
    block_s: float
    clock: Clock = time.monotonic
    _failures: dict[str, deque[tuple[float, str]]] = field(default_factory=dict)  # (when, user name)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def blocked_for(self, address: str) -> float:
        """Seconds the address is still shut out (0: it may try)."""
        until = self._blocked_until.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked_until[address]
            return 0.0
        return left

    def failed(self, address: str, username: str) -> bool:
        """Count one failure; True when it shuts the address out."""
        now = self.clock()
        recent = self._failures.setdefault(address, deque())
        recent.append((now, username))
        while recent and recent[0][0] <= now - self.window_s:
            recent.popleft()
        if len(recent) < self.max_failures:
            return False
        del self._failures[address]
        self._blocked_until[address] = now + self.block_s
        return True

    def succeeded(self, address: str, username: str) -> None:
        """`username` logged in from the address: forget its failures there, and only its."""
        recent = self._failures.get(address)
        if recent is None:
            return
        kept = deque(entry for entry in recent if entry[1] != username)
        if kept:
            self._failures[address] = kept
        else:
            del self._failures[address]

    def forget_old(self) -> None:
        """Drop addresses with nothing recent, so a scan from many addresses cannot grow memory for ever."""
        now = self.clock()
        for address in [a for a, times in self._failures.items() if not times or times[-1][0] <= now - self.window_s]:
            del self._failures[address]
        for address in [a for a, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[address]


class Credentials:
    """The players' keys and password hashes, parsed once."""

    def __init__(self, config: HostConfig) -> None:
        self._keys = {
            name: {key.public_data for key in player.public_keys()} for name, player in config.players.items()
        }
        self._hashes = {name: player.password_hash for name, player in config.players.items() if player.password_hash}

    @property
    def any_password(self) -> bool:
        return bool(self._hashes)

    def key_allowed(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data in self._keys.get(username, set())

    def password_allowed(self, username: str, password: str) -> bool:
        """Blocking (scrypt takes about 0.1 s): call it in a thread."""
        stored = self._hashes.get(username)
        if stored is None:
            # An unknown user costs the same time as a known one: timing does not tell who exists.
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, stored)


# A hash of nothing anyone knows, checked for unknown users so that they take as long as real ones.
_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="
