"""Handing freed memory back to the system after a generation.

llama.cpp's grammar sampler decodes every token of the vocabulary (262k for Gemma 3) at each
sampling step, in short-lived allocations. glibc keeps the freed pages in its arenas, so a game's
memory settles about 120 MiB above what it uses: for a host with one game per player, that is
most of each player's cost. `malloc_trim` returns them (the session calls it once the engine
has been idle a second: engine/session.py). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_trim = _malloc_trim()


def release_freed_memory() -> None:
    if _trim is not None:
        _trim(0)
