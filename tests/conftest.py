"""Shared fixtures. The real embedded model is loaded once per test session.

Every test gets its own config and data directories (SIMULARITY_CONFIG_DIR / _DATA_DIR), so no
test reads or writes the player's real settings or saves. The model cache stays shared: joining
253 MB of chunks once per run is enough (tests/test_embedded_model.py joins into a temporary one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simularity_tui import paths
from simularity_tui.engine import LlamaSession, ModelConfig
from simularity_tui.engine.embedded_model import prepare_embedded_model

TEST_N_CTX = 2048
TEST_THREADS = 2


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULARITY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SIMULARITY_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="session")
def model_path() -> Path:
    return prepare_embedded_model(paths.cache_dir())


@pytest.fixture(scope="session")
def session(model_path: Path) -> Iterator[LlamaSession]:
    """The one loaded model every engine, story and UI test shares."""
    loaded = LlamaSession.open_blocking(ModelConfig(model_path, n_ctx=TEST_N_CTX, n_threads=TEST_THREADS))
    yield loaded
    loaded.close_blocking()


@pytest.fixture(scope="session")
def small_session(model_path: Path) -> Iterator[LlamaSession]:
    """A 512-token context on the same model file, for tests that fill the context many times."""
    loaded = LlamaSession.open_blocking(ModelConfig(model_path, n_ctx=512, n_threads=TEST_THREADS))
    yield loaded
    loaded.close_blocking()


@pytest.fixture(scope="session")
def unshifting_session(model_path: Path) -> Iterator[LlamaSession]:
    """As `small_session`, with context shifting turned off: the fallback path, forced."""
    loaded = LlamaSession.open_blocking(ModelConfig(model_path, n_ctx=512, n_threads=TEST_THREADS, context_shift=False))
    yield loaded
    loaded.close_blocking()
