"""Reading a stranger's file (a card, a lorebook, an image) without trusting it.

Only a regular file is opened (a FIFO would block, a device never end), and only up to a cap; a
path that is a link is refused where the caller says so (a folder of images must not lead out of
itself). JSON is parsed with its nesting bounded and its position reported on error.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .card_errors import CardError


def read_capped(path: Path, *, limit: int, what: str, hint: str, follow_links: bool = True) -> bytes:
    """The file's bytes; `what` names it in messages ("a card"), which end with `hint`."""
    try:
        status = os.stat(path, follow_symlinks=follow_links)
        if not _is_regular(status, path, limit, what, hint):
            raise CardError(f"{path} is not a regular file (a device, a pipe or a socket?)", hint=hint)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        if not follow_links:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            if not _is_regular(os.fstat(handle.fileno()), path, limit, what, hint):  # replaced since the stat
                raise CardError(f"{path} is not a regular file", hint=hint)
            raw = handle.read(limit + 1)  # the file may have grown since the stat
    except (FileNotFoundError, NotADirectoryError):
        raise CardError(f"{path}: no such file", hint=hint) from None
    except OSError as error:
        raise CardError(f"{path}: cannot read it ({error.strerror})") from None
    if len(raw) > limit:
        raise CardError(f"{path} is more than {_size(limit)}; {what} may be at most that")
    return raw


def _is_regular(status: os.stat_result, path: Path, limit: int, what: str, hint: str) -> bool:
    if stat.S_ISDIR(status.st_mode):
        raise CardError(f"{path} is a directory", hint=hint)
    if stat.S_ISLNK(status.st_mode):
        raise CardError(f"{path} is a symbolic link; only the files themselves are read", hint=hint)
    if status.st_size > limit:
        raise CardError(f"{path} is {status.st_size / 2**20:.0f} MiB; {what} may be at most {_size(limit)}")
    return stat.S_ISREG(status.st_mode)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def json_int(digits: str) -> int | str:
    # Python refuses to convert more than 4,300 digits (a ValueError from json.loads); no card
    # needs a number that long, so it is kept as the text it is.
    return int(digits) if len(digits) <= 40 else digits


def nests_deeper(value: object, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` deep; iterative, as the value may be deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(path: Path, raw: bytes, *, depth: int) -> Any:
    """`raw` as JSON; malformed JSON is a `CardError` at `FILE:line:col`, as editors point at it."""
    try:
        value = json.loads(raw.decode("utf-8-sig"), parse_int=json_int)
    except UnicodeDecodeError as error:
        raise CardError(f"{path}: not UTF-8 text (a byte that cannot be, at byte {error.start:,})") from None
    except json.JSONDecodeError as error:
        raise CardError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}",
            hint="Fix the file at that place (an editor shows line and column), or export it again.",
        ) from None
    except RecursionError:
        raise CardError(f"{path}: the JSON nests too deeply") from None
    if nests_deeper(value, depth):
        raise CardError(f"{path}: the JSON nests more than {depth} levels deep; no lorebook needs that")
    return value
