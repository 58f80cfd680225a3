"""Handing freed memory back to the system after a generation, and keeping the long-lived
Python heap out of the cycle collector's way.

llama.cpp's grammar sampler decodes every token of the vocabulary (262k for Gemma 3) at each
sampling step, in short-lived allocations. glibc keeps the freed pages in its arenas, so a game's
memory settles about 120 MiB above what it uses: for a host with one game per player, that is
most of each player's cost. `malloc_trim` returns them (the session calls it once the engine
has been idle a second: engine/session.py). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
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


def settle_long_lived() -> None:
    """Collect what is garbage now, then set everything still alive apart from the cycle collector.

    Called once a game is open and the one before it let go (the app, a room): what is alive then
    (the modules, the model's tables, the pack, the story so far) lives as long as the game. Left
    in the collector's oldest generation, each full collection walks all of it again, 55 to 85 ms
    on the event loop (measured in `bench story`, eleven times in 300 turns), a stall wherever it
    falls, before a line's first text included. Frozen objects are still freed when their last
    reference goes; only a cycle among them would outlive its use (a game is one: its autosave is
    its save's method), so the next call thaws them all and collects first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
