"""Hot reload: watch a pack's directory and load it again on every save.

`watch_pack` yields a fresh `LoadedPack` after each save that leaves the pack valid, and the
`PackProblems` (every problem, `file:line`) after a save that does not; the caller keeps playing
on the last good pack until the next valid save. Changes are debounced briefly, so an editor that
writes a file in several steps causes one reload, well within a second.

Only the pack's own folders are watched, each on its own (not recursively): a recursive watch
follows links, and a pack holding `up -> /` would have the game watch the whole machine. The set
of folders is looked at again after each change, so a folder the author adds is watched too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import UserFacingError
from .loader import LoadedPack, load_pack
from .sources import pack_directories

DEBOUNCE_MS = 150
MAX_WATCHED_DIRECTORIES = 256

log = logging.getLogger("simularity")


async def watch_pack(root: Path, stop: asyncio.Event | None = None) -> AsyncIterator[LoadedPack | UserFacingError]:
    from watchfiles import awatch  # here: importing the story (the settings do) starts no watcher library

    folders = await _folders(root)
    while folders:
        changed_folders = False
        try:
            async for _changes in awatch(
                *folders, debounce=DEBOUNCE_MS, step=25, stop_event=stop, recursive=False, ignore_permission_denied=True
            ):
                try:
                    yield await asyncio.to_thread(load_pack, root)
                except UserFacingError as problems:
                    yield problems
                now = await _folders(root)
                if now != folders:
                    folders, changed_folders = now, True
                    break
        except FileNotFoundError:  # a folder went away between looking and watching
            folders, changed_folders = await _folders(root), True
        if not changed_folders:
            return  # stopped


async def _folders(root: Path) -> list[Path]:
    folders = await asyncio.to_thread(pack_directories, root)
    if len(folders) > MAX_WATCHED_DIRECTORIES:
        log.warning("%s has %d folders: only the first %d are watched", root, len(folders), MAX_WATCHED_DIRECTORIES)
    return [folder for folder in folders[:MAX_WATCHED_DIRECTORIES] if folder.is_dir()]
