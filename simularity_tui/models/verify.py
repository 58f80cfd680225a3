"""The checks a downloaded file passes before it is offered as a model, cheapest first.

1. its size is the size the Hub (or the catalogue) gave;
2. it is a complete GGUF file: header, metadata and tensor table read, the tensors' data all there
   (engine/gguf_file.py, the same check the game makes before loading);
3. its sha256 is the one the catalogue gives, else the one the Hub publishes (a large file's ETag).

A file that fails is the caller's to delete: it is never offered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ..engine.errors import ModelFileError
from ..engine.gguf_file import inspect_gguf
from .errors import ModelLibraryError

_BLOCK = 1 << 20
_REPORT_EVERY = 16 * _BLOCK

HashProgress = Callable[[int, int], None]  # (bytes hashed, bytes in all)


class CheckFailed(ModelLibraryError):
    """The downloaded file is not the model it should be."""


def check_download(
    path: Path, *, label: str, size: int | None, sha256: str | None, progress: HashProgress | None = None
) -> str:
    """Check `path` (the download of `label`, OWNER/NAME/FILE); its sha256 when every check passes."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise CheckFailed(f"The download of {label} has {actual:,} bytes; the file has {size:,}")
    try:
        inspect_gguf(path)
    except ModelFileError as error:
        raise CheckFailed(f"The download of {label} is not a usable model: {error.message}") from None
    digest = sha256_of(path, progress)
    if sha256 is not None and digest != sha256:
        raise CheckFailed(
            f"The download of {label} is not the published file: its sha256 is {digest}, not {sha256}",
        )
    return digest


def sha256_of(path: Path, progress: HashProgress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            done += len(block)
            if progress is not None and (done % _REPORT_EVERY == 0 or done == total):
                progress(done, total)
    return digest.hexdigest()
