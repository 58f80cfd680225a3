"""Start-up stays light: what `simularity --help`, `simularity check` and the game's first frame
import, read from `python -X importtime` in a fresh interpreter; and the library answers keys at
its first frame, before its scan of the packs (or the model) has come in.

The heavy libraries (pydantic's models of packs and settings, the story, Pillow, textual-image with
numpy, llama.cpp) load where they are first needed: the settings validated right after the first
frame, a pack being read, a picture drawn, a game started (issue 16, point 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

import pytest
from textual.widgets import ListView, Static

from simularity_tui import budget_defaults, cli, first_frame, scenario
from simularity_tui.engine.chat_template import CHOICES
from simularity_tui.engine.config import KvCacheType
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.settings import GraphicsMode, Settings
from simularity_tui.story import Budgets
from simularity_tui.story.reminders import REMIND_EVERY
from simularity_tui.story.saves import AUTOSAVE
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.help_screen import HelpScreen
from simularity_tui.ui.library_screen import LibraryScreen, PackItem
from simularity_tui.ui.themes import load_themes, quick_themes, user_themes_dir
from tests.fake_model import FakeSession

ROOT = Path(__file__).resolve().parents[1]
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"
IMPORT_LINE = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \| +(\S+)\s*$")


def imported(stderr: str) -> set[str]:
    """Every module an `-X importtime` run imported, from its standard error."""
    return {match.group(1) for line in stderr.splitlines() if (match := IMPORT_LINE.match(line))}


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_help_imports_no_screen_no_pydantic_no_pillow_no_numpy_no_llama_cpp() -> None:
    done = run_python("-m", "simularity_tui", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: simularity" in done.stdout
    modules = imported(done.stderr)
    assert {"argparse", "simularity_tui.cli"} <= modules, "the import lines were read"
    assert top_level(modules) & {"textual", "pydantic", "PIL", "numpy", "llama_cpp"} == set()
    assert not {"simularity_tui.settings", "simularity_tui.story", "simularity_tui.engine"} & modules


def test_check_imports_no_screen_no_numpy_no_llama_cpp() -> None:
    # main() given its arguments, as `simularity check` runs it, but keeping standard error: the real
    # command sends descriptor 2 (where -X importtime writes) to the log (native_stderr.py).
    script = f"from simularity_tui.cli import main; raise SystemExit(main(['check', {str(LIGHTHOUSE)!r}]))"
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ": valid: The Lighthouse at Gull Point" in done.stdout
    modules = imported(done.stderr)
    assert {"pydantic", "simularity_tui.scenario.loader"} <= modules, "the import lines were read"
    assert top_level(modules) & {"textual", "numpy", "llama_cpp", "textual_image"} == set()


FIRST_FRAME = """
import asyncio, json, sys, threading

import simularity_tui.scenario as scenario
from simularity_tui.settings import Settings
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from tests.fake_model import FakeSession

gate = threading.Event()
discover = scenario.discover_packs
scenario.discover_packs = lambda *folders: (gate.wait(60), discover(*folders))[1]


async def first_frame():
    settings = Settings()
    settings.ui.graphics = "none"  # as `bench startup` starts the game
    app = SimularityApp(LaunchOptions(settings), session=FakeSession(n_ctx=2048))
    async with app.run_test(size=(100, 30)) as pilot:
        seen = {"screen": type(app.screen).__name__, "modules": sorted(sys.modules)}
        await pilot.press("f1")
        seen["after_f1"] = type(app.screen).__name__
        gate.set()
    print(json.dumps(seen))


asyncio.run(first_frame())
"""


def test_the_first_frame_imports_no_other_screen_nor_pillow_numpy_or_llama_cpp() -> None:
    done = run_python("-c", FIRST_FRAME)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["screen"] == "LibraryScreen"
    modules = set(seen["modules"])
    assert top_level(modules) & {"PIL", "numpy", "llama_cpp", "textual_image", "gguf", "httpx", "jinja2"} == set()
    later = {
        "simularity_tui.ui.play_screen", "simularity_tui.ui.models_screen", "simularity_tui.ui.settings_screen",
        "simularity_tui.ui.saves_screen", "simularity_tui.ui.new_game_screen", "simularity_tui.ui.help_screen",
        "simularity_tui.ui.commands", "simularity_tui.ui.stage_image", "simularity_tui.model_session",
    }  # fmt: skip
    assert later & modules == set()
    assert seen["after_f1"] == "HelpScreen", "F1 opens the help at the first frame (its screen imported then)"


# The game as `simularity` starts it (cli.launch_options), with no settings handed in: they are read
# and validated once `_after_first_frame` runs, which this script replaces to see what came before.
CLI_FIRST_FRAME = """
import asyncio, json, sys, threading

from simularity_tui import cli
from simularity_tui.ui import library_screen
from simularity_tui.ui.app import SimularityApp

gate = threading.Event()
library_screen._scan_packs = lambda folders: (gate.wait(60), ([], []))[1]
seen = {}


def first_frame(app):
    if "modules" not in seen:
        seen.update(screen=type(app.screen).__name__, theme=app.theme, modules=sorted(sys.modules))
    gate.set()


SimularityApp._after_first_frame = first_frame


async def main():
    args = cli.build_parser().parse_args(["--graphics", "none", *sys.argv[1:]])
    app = SimularityApp(cli.launch_options(args, cli.first_frame_settings(args)))
    async with app.run_test(size=(100, 30)) as pilot:
        while "modules" not in seen:
            await pilot.pause(0.01)
    print(json.dumps(seen))


asyncio.run(main())
"""


@pytest.mark.parametrize("argv", [[], ["--pack", str(LIGHTHOUSE), "--new"]], ids=["library", "pack"])
def test_the_first_frame_imports_no_pydantic_nor_the_story(argv: list[str]) -> None:
    """Neither the library nor the loading screen (`bench startup`'s first frame) waits for the
    settings' validation, the pack format or the story; the settings file's theme shows at once."""
    done = run_python("-c", CLI_FIRST_FRAME, *argv)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["screen"] == ("LoadingScreen" if argv else "LibraryScreen")
    assert seen["theme"] == "lamplight"
    modules = set(seen["modules"])
    assert {"textual", "simularity_tui.ui.app", "simularity_tui.first_frame"} <= modules
    assert top_level(modules) & {"pydantic", "pydantic_core", "PIL", "numpy", "llama_cpp", "textual_image"} == set()
    assert {"simularity_tui.settings", "simularity_tui.story", "simularity_tui.scenario"} & modules == set()
    assert not any(module.startswith(("simularity_tui.story.", "simularity_tui.engine.")) for module in modules)


def test_the_parsers_own_names_match_their_homes() -> None:
    assert cli.TEMPLATE_CHOICES == CHOICES
    assert cli.KV_CACHE_CHOICES == get_args(KvCacheType)
    assert cli.GRAPHICS_MODES == first_frame.GRAPHICS_MODES == get_args(GraphicsMode)
    assert cli.AUTOSAVE == first_frame.AUTOSAVE == AUTOSAVE


def test_the_settings_defaults_are_the_storys_and_the_first_frames() -> None:
    assert budget_defaults.REMIND_EVERY == REMIND_EVERY
    assert Settings().budgets() == Budgets()
    assert (Budgets().directions, Budgets().line) == (budget_defaults.DIRECTION_TOKENS, budget_defaults.LINE_TOKENS)
    ui, game = Settings().ui, Settings().game
    assert first_frame.FirstFrameSettings() == first_frame.FirstFrameSettings(ui.graphics, ui.theme, game.scenarios_dir)


def test_the_first_frames_themes_are_those_loaded_after_it() -> None:
    """Read without pydantic for the first frame: the same themes as pydantic's reading, less those
    with problems (which load_themes explains right after)."""
    user_themes_dir().mkdir(parents=True)
    (user_themes_dir() / "dusk.toml").write_text('name = "dusk"\nprimary = "#c080ff"\ndark = false\n')
    (user_themes_dir() / "broken.toml").write_text('name = "broken"\nprimary = "red"\n')
    (user_themes_dir() / "lax.toml").write_text('name = "lax"\nprimary = "#c080ff"\ndark = "yes"\n')
    loaded, problems = load_themes()
    quick = quick_themes()
    assert len(problems) == 1 and "broken.toml:2:1" in problems[0].message
    assert "dusk" in {theme.name for theme in quick} and "broken" not in {theme.name for theme in quick}
    assert [theme for theme in loaded if theme.name != "lax"] == quick  # "yes" is pydantic's true only


@pytest.fixture
def held_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The library's scan of the packs waits until the test sets the event: the first frame, held."""
    gate = threading.Event()
    discover = scenario.discover_packs

    def held(*folders: Path) -> tuple[list[scenario.LoadedPack], list[UserFacingError]]:
        assert gate.wait(60), "the test never let the scan go on"
        return discover(*folders)

    monkeypatch.setattr(scenario, "discover_packs", held)
    yield gate
    gate.set()


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_the_library_answers_keys_at_its_first_frame(
    fake_session: FakeSession, held_scan: threading.Event
) -> None:
    settings = Settings()
    settings.ui.graphics = "none"
    app = SimularityApp(LaunchOptions(settings), session=fake_session)
    async with app.run_test(size=(100, 30)) as pilot:
        library = app.screen
        assert isinstance(library, LibraryScreen) and not library.scanned  # the first frame: no packs yet
        assert "Looking for packs" in str(library.query_one("#pack-title", Static).render())
        await pilot.press("f1")
        await wait_for(lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_for(lambda: app.screen is library)
        assert not library.scanned, "the keys were answered while the scan still waited"

        held_scan.set()
        await wait_for(lambda: library.scanned)
        packs = library.query_one("#packs", ListView)
        first = packs.highlighted_child
        assert packs.index == 0 and isinstance(first, PackItem)
        await pilot.press("down")
        await wait_for(lambda: packs.index == 1)
        second = packs.highlighted_child
        assert isinstance(second, PackItem) and second.loaded.pack.name != first.loaded.pack.name
        await wait_for(lambda: second.loaded.pack.name in str(library.query_one("#pack-title", Static).render()))
