"""Joining the embedded model's chunks into the cache: checked, with progress, never half-written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from simularity_tui.engine.embedded_model import (
    EXPECTED_SHA256,
    embedded_model_path,
    prepare_embedded_model,
)


class Interrupted(Exception):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_first_use_joins_the_chunks_with_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    path = prepare_embedded_model(tmp_path, lambda done, total: seen.append((done, total)))
    assert path == embedded_model_path(tmp_path) and sha256(path) == EXPECTED_SHA256
    assert len(seen) > 10 and seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert path.stat().st_mode & 0o777 == 0o644
    # The second start finds it ready: no copy, no progress.
    again: list[tuple[int, int]] = []
    assert prepare_embedded_model(tmp_path, lambda d, t: again.append((d, t))) == path and again == []


def test_an_interrupted_copy_never_looks_complete(tmp_path: Path) -> None:
    def stop_halfway(done: int, total: int) -> None:
        if done > total // 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        prepare_embedded_model(tmp_path, stop_halfway)
    models = embedded_model_path(tmp_path).parent
    assert not embedded_model_path(tmp_path).exists()
    assert list(models.iterdir()) == [], "the partial copy was left behind"
    assert sha256(prepare_embedded_model(tmp_path)) == EXPECTED_SHA256


def test_a_damaged_copy_is_replaced(tmp_path: Path) -> None:
    path = prepare_embedded_model(tmp_path)
    with path.open("r+b") as handle:  # flip one byte in the middle, keeping size and name
        handle.seek(100_000_000)
        byte = handle.read(1)
        handle.seek(100_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    joined: list[int] = []  # the stamp no longer matches the file's mtime: it is checked, then joined again
    assert sha256(prepare_embedded_model(tmp_path, lambda done, total: joined.append(done))) == EXPECTED_SHA256
    assert joined
