"""Salted password hashes for `password_hash` in host.toml: scrypt from the standard library.

Format: `scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>`; the cost is kept in the string so that
hashes made today still verify if the default cost is raised later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_PREFIX = "scrypt"
# n=2**15, r=8: 32 MiB and about 0.1 s per check; slow for a guesser, unnoticeable at a login.
_N, _R, _P = 1 << 15, 8, 1
_LENGTH = 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=_LENGTH)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    encoded = (base64.b64encode(part).decode("ascii") for part in (salt, digest))
    return "$".join([_PREFIX, str(_N), str(_R), str(_P), *encoded])


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return None
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = (base64.b64decode(part, validate=True) for part in parts[4:6])
    except ValueError:
        return None
    # Bounds (256 MiB at most) keep a hand-edited config from asking scrypt for gigabytes per login.
    power_of_two = n >= 2 and n & (n - 1) == 0
    if not (power_of_two and r >= 1 and p >= 1 and n * r * p <= 1 << 21 and salt and len(digest) == _LENGTH):
        return None
    return n, r, p, salt, digest


def is_password_hash(stored: str) -> bool:
    return _parse(stored) is not None


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)
