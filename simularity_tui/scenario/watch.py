"""Hot reload: watch a pack's directory and load it again on every save.

`watch_pack` yields a fresh `LoadedPack` after each save that leaves the pack valid, and the
`PackProblems` (every problem, `file:line`) after a save that does not; the caller keeps playing
on the last good pack until the next valid save. Changes are debounced briefly, so an editor that
writes a file in several steps causes one reload, well within a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from watchfiles import awatch

from ..errors import UserFacingError
from .loader import LoadedPack, load_pack

DEBOUNCE_MS = 150


async def watch_pack(root: Path, stop: asyncio.Event | None = None) -> AsyncIterator[LoadedPack | UserFacingError]:
    async for _changes in awatch(root, debounce=DEBOUNCE_MS, step=25, stop_event=stop, recursive=True):
        try:
            yield await asyncio.to_thread(load_pack, root)
        except UserFacingError as problems:
            yield problems
