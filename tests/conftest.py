"""Shared fixtures. The real embedded model is loaded once per test session, when a test first asks
for it: nothing here imports llama.cpp, so the fast tier (README) runs where it cannot load.
`fake_session` is the scripted stand-in (tests/fake_model.py) for tests the real model adds nothing to.

Every test gets its own config and data directories (SIMULARITY_CONFIG_DIR / _DATA_DIR), so no
test reads or writes the player's real settings or saves. The model cache stays shared: joining
253 MB of chunks once per run is enough (tests/test_embedded_model.py joins into a temporary one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui import paths

from .fake_model import FakeSession

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

# pytest-xdist's workers carry COLUMNS=80 and LINES=24 in their environment: every program a test
# starts on a terminal of its own (a pty, tmux, xterm) would inherit them and draw at 80x24, whatever
# the terminal's size.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

TEST_N_CTX = 2048
# tools/check runs the suite in two worker processes on a 2-core machine: one llama.cpp thread each
# keeps both cores busy without the two workers' threads taking turns on them (run alone: both).
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULARITY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SIMULARITY_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="session")
def model_path() -> Path:
    from simularity_tui.engine.embedded_model import prepare_embedded_model

    return prepare_embedded_model(paths.cache_dir())


def _open(model_path: Path, n_ctx: int, *, context_shift: bool = True) -> LlamaSession:
    from simularity_tui.engine import LlamaSession, ModelConfig  # llama.cpp loads here, not at collection

    config = ModelConfig(model_path, n_ctx=n_ctx, n_threads=TEST_THREADS, context_shift=context_shift)
    return LlamaSession.open_blocking(config)


@pytest.fixture(scope="session")
def session(model_path: Path) -> Iterator[LlamaSession]:
    """The one loaded model every engine, story and UI test shares."""
    loaded = _open(model_path, TEST_N_CTX)
    yield loaded
    loaded.close_blocking()


@pytest.fixture(scope="session")
def small_session(model_path: Path) -> Iterator[LlamaSession]:
    """A 512-token context on the same model file, for tests that fill the context many times."""
    loaded = _open(model_path, 512)
    yield loaded
    loaded.close_blocking()


@pytest.fixture(scope="session")
def unshifting_session(model_path: Path) -> Iterator[LlamaSession]:
    """As `small_session`, with context shifting turned off: the fallback path, forced."""
    loaded = _open(model_path, 512, context_shift=False)
    yield loaded
    loaded.close_blocking()


@pytest.fixture
def fake_session() -> FakeSession:
    """A scripted session with no model (tests/fake_model.py), fresh for each test."""
    return FakeSession(n_ctx=TEST_N_CTX)


# -- tiers ------------------------------------------------------------------------------------------
# Each test is marked with what it needs beyond Python (pyproject.toml lists the markers), so that
# `-m "not model and not terminal and not ssh and not server"` is the fast tier (README). A fixture
# says it for most; a test that starts the game or a server itself carries its mark in its module.
MODEL_FIXTURES = frozenset({"session", "small_session", "unshifting_session", "model_path"})
FIXTURE_MARKS = {
    "pane": "terminal",  # tests/test_terminal.py: the game in tmux
    "panes": "terminal",  # tests/test_host.py: ssh clients in tmux
    "programs": "terminal",  # tests/test_terminal_bytes.py: the game on a pseudo-terminal
    "display": "terminal",  # tests/test_xterm_sixel.py: xterm on Xvfb
    "host": "ssh",  # tests/test_host.py: `simularity host` with its players
    "server": "server",  # tests/test_remote_backend.py: llama-cpp-python's server and llama-server on loopback
    "remote": "server",
    "misbehaving": "server",  # a stand-in server that answers badly, on loopback
    "hub": "server",  # tests/test_models.py: a stand-in for the Hugging Face Hub, on loopback
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))  # every fixture the test needs, however deep
        marks = {FIXTURE_MARKS[name] for name in used & FIXTURE_MARKS.keys()}
        if used & MODEL_FIXTURES:
            marks.add("model")
        for mark in sorted(marks):
            item.add_marker(mark)
