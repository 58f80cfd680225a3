"""The Models screen (F5): its look at 80×24 and 160×48 (snapshots, on fixed memory figures and
fixed directories), and a download driven by keys against the stand-in Hub: progress, cancel,
resume, play on it, delete."""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Label

from simularity_tui import paths
from simularity_tui.engine.embedded_model import EXPECTED_SHA256
from simularity_tui.models import fit, store
from simularity_tui.ui.models_screen import ModelsScreen
from tests.fake_model import FakeSession
from tests.hub_server import FakeHub
from tests.test_models import FILE, MEMORY, REPO, catalogue_entry
from tests.test_snapshots import SIZES, app, settle

FIXED = Path("/tmp/simularity-snapshots-models")  # paths on screen must not change from run to run


@pytest.fixture(autouse=True)
def fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(FIXED, ignore_errors=True)
    for room in ("config", "data", "cache"):
        monkeypatch.setenv(f"SIMULARITY_{room.upper()}_DIR", str(FIXED / room))
    monkeypatch.setattr(fit, "machine_memory", lambda: MEMORY)


def pretend_installed(repo: str, file: str, size: int) -> None:
    """A file as a pull leaves it (sparse: no disk space used), stamped as checked."""
    path = store.target_path(repo, file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    store.write_stamp(path, repo=repo, file=file, sha256="0" * 64, commit="c")


async def open_models(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("f5")
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_models_screen(snap_compare, fake_session: FakeSession, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    pretend_installed("bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf", 2019377696)
    partial = store.partial_path(
        store.target_path("bartowski/google_gemma-3-4b-it-GGUF", "google_gemma-3-4b-it-Q4_K_M.gguf"), "e" * 64
    )
    partial.parent.mkdir(parents=True)
    with partial.open("wb") as handle:
        handle.truncate(1_200_000_000)

    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_models(pilot)
        await pilot.press("down", "down", "down", "down")  # the installed Llama 3.2 3B
        await settle(pilot)

    assert snap_compare(app(fake_session), terminal_size=size, run_before=open_it)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(FIXED / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    fake.stop()


async def until(pilot, done, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if done():
            return
        await pilot.pause(0.05)
    raise AssertionError("waited in vain")


async def test_download_cancel_resume_use_and_delete(
    hub: FakeHub, model_path: Path, fake_session: FakeSession, tmp_path: Path
) -> None:
    size = model_path.stat().st_size
    hub.add(REPO, FILE, model_path, etag=EXPECTED_SHA256)
    catalogue_entry(tmp_path, size=size, sha256=EXPECTED_SHA256)
    hub.hold_after = 32 << 20
    partial = store.partial_path(store.target_path(REPO, FILE), EXPECTED_SHA256)
    async with app(fake_session).run_test(size=(160, 48)) as pilot:
        await open_models(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one(DataTable)
        table.move_cursor(row=list(screen.listed).index("story:Q4_K_M"))
        await pilot.press("enter")
        await until(pilot, lambda: partial.exists() and partial.stat().st_size >= 32 << 20)
        status = screen.query_one("#model-status", Label)
        await until(pilot, lambda: str(status.render()).startswith("Downloading story:Q4_K_M: "))
        assert str(status.render()).endswith(" of 253 MB")
        await pilot.press("c")
        hub.hold_after = None
        hub.release.set()  # the next MiB comes, and the pull sees the Cancel
        await until(pilot, lambda: screen._pulling is None)
        assert screen.listed["story:Q4_K_M"].state == "partial" and store.installed(REPO, FILE) is None

        sent = hub.sent
        await pilot.press("enter")  # goes on from what was kept
        await until(pilot, lambda: screen._pulling is None and screen.listed["story:Q4_K_M"].state == "installed")
        assert hub.sent - sent == size - resumed_from(hub)  # only the rest
        await pilot.press("u")
        assert tomllib.loads(paths.settings_file().read_text())["model"]["path"] == str(store.target_path(REPO, FILE))
        await pilot.press("d", "d")
        await settle(pilot)
        assert store.installed(REPO, FILE) is None and not store.target_path(REPO, FILE).exists()
        assert tomllib.loads(paths.settings_file().read_text())["model"]["path"] == ""
        assert os.listdir(store.library_dir()) == []


def resumed_from(hub: FakeHub) -> int:
    """Where the resumed GET started: its Range header."""
    ranges = [entry[2] for entry in hub.log if entry[0] == "GET"]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=")
    return int(ranges[-1].removeprefix("bytes=").rstrip("-"))
