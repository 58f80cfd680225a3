"""A save's cache on llama-server: the slot the game plays in, saved to a file of the server's.

llama-server started with `--slot-save-path DIR` saves a slot's KV cache to `DIR/NAME` and
restores it (`POST /slots/ID?action=save|restore {"filename": NAME}`), so that a long game resumed
on a server reads only its new turn, as the in-process engine's KV state files do. The file stays
on the server; beside the save, in place of a state file, the game keeps a small JSON sidecar that
names it and says what it holds: the server and model it was saved on, the server's build (a slot
file's layout is the build's), and the session's own account of the window (the tokens the cache
holds, the last prompt, its pinned part and first turn). Each save has two files on the server,
named by a digest of the server and the save's path, and writes the one its sidecar does not name:
the sidecar switches to the new file only once it is written, so a kill between the two leaves the
old pair whole, and a save never leaves more than two files behind. A sidecar that is damaged, of
another server, model or build, or whose file the server no longer has, is ignored with a warning
and the story is read again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ...atomic import atomic_writer

FORMAT = "simularity remote slot 1"
MAX_SIDECAR = 32 << 20  # a window of 1 << 20 tokens as decimal digits, twice, with room
_NAME = re.compile(r"simularity-[0-9a-f]{40}-[ab]\.bin")  # the only names sent to the server


class SlotFileError(Exception):
    """Why a sidecar cannot be used (said to the player as a warning)."""


@dataclass(frozen=True)
class SlotState:
    server: str  # RemoteInfo.identity: the server's URL and model
    build: str  # the server's build (/props build_info)
    filename: str  # in the server's --slot-save-path
    n_saved: int  # tokens the server said it saved
    held: list[int]  # what the session counts the cache as holding: the last prompt and reply
    window: list[int]  # the last prompt sent
    n_keep: int
    first_turn: int


def slot_filename(server: str, save: Path, previous: str | None) -> str:
    """The file on the server for the save whose sidecar is `save`: of its two, the one the sidecar
    does not name now (`previous`). A plain name: llama-server takes no path."""
    digest = hashlib.sha256(json.dumps([server, str(save.resolve())]).encode()).hexdigest()[:40]
    first = f"simularity-{digest}-a.bin"
    return f"simularity-{digest}-b.bin" if previous == first else first


def write_sidecar(path: Path, state: SlotState) -> int:
    """Write `state` beside a save, atomically; its size in bytes."""
    with atomic_writer(path) as handle:
        handle.write(json.dumps({"format": FORMAT, **asdict(state)}, separators=(",", ":")).encode())
    return path.stat().st_size


def read_sidecar(path: Path) -> SlotState:
    """The sidecar at `path`; SlotFileError, naming the file, when it is not one this version wrote."""
    damaged = SlotFileError(f"{path.name} is not a slot file of the model server's cache")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SIDECAR + 1)
    except FileNotFoundError:
        raise SlotFileError(f"{path.name} does not exist") from None
    except OSError as error:
        raise SlotFileError(f"{path.name} cannot be read ({error.strerror})") from None
    if len(data) > MAX_SIDECAR:
        raise damaged
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise damaged from None
    if not isinstance(document, dict) or document.pop("format", None) != FORMAT:
        raise damaged
    state = _state(document)
    if state is None:
        raise damaged
    return state


def _state(document: dict[str, Any]) -> SlotState | None:
    """The state, if `document` has exactly its fields, each of its type, and a window that fits."""
    names = {field.name: field.type for field in fields(SlotState)}
    if set(document) != set(names):
        return None
    for name, kind in names.items():
        value = document[name]
        if kind == "str" and not isinstance(value, str):
            return None
        if kind == "int" and not _count(value):
            return None
        if kind == "list[int]" and not (isinstance(value, list) and all(_count(item) for item in value)):
            return None
    state = SlotState(**document)
    if not _NAME.fullmatch(state.filename):
        return None  # never a name the server could take as a path elsewhere
    if not state.n_keep <= len(state.window) or not state.held or state.window != state.held[: len(state.window)]:
        return None
    return state


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
