"""settings.toml: optional, validated, every problem reported at its line; in the game, read
with tomllib for its first frame and validated right after it, a problem shown on the error screen."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input

from simularity_tui import cli, paths
from simularity_tui.first_frame import FirstFrameSettings, read_first_frame_settings
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.settings import Settings, load_settings, save_settings
from simularity_tui.toml_source import TomlProblems
from simularity_tui.ui.app import SimularityApp
from simularity_tui.ui.error_screen import ErrorScreen
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


def test_no_file_means_defaults_that_play_on_the_embedded_model() -> None:
    assert not paths.settings_file().exists()
    settings = load_settings()
    assert settings == Settings() and settings.model.path == ""


def test_settings_round_trip_through_the_config_dir() -> None:
    settings = Settings()
    settings.model.n_ctx = 8192
    settings.sampling.seed = 42
    path = save_settings(settings)
    assert path == paths.settings_file() and path.parent == paths.config_dir()
    assert path.read_text() == "[model]\nn_ctx = 8192\n\n[sampling]\nseed = 42\n"
    assert load_settings() == settings


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "# my settings\n"
        "[model]\n"
        "path = '/models/big.gguf'\n"
        "n_ctx = 100\n"
        "threds = 4\n"
        "\n"
        "[sampling]\n"
        "temperature = 'hot'\n"
    )
    with pytest.raises(TomlProblems) as raised:
        load_settings(path)
    lines = str(raised.value).splitlines()
    assert lines == [
        f"{path}:4:1: model.n_ctx: Input should be greater than or equal to 256 (got 100)",
        f"{path}:5:1: unknown key 'model.threds'; did you mean 'threads'?",
        f"{path}:8:1: sampling.temperature: Input should be a valid number, "
        "unable to parse string as a number (got 'hot')",
    ]
    assert "every key is optional" in raised.value.hint


def test_a_syntax_error_points_at_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[model]\nn_ctx = 4096\nthreads = = 2\n")
    with pytest.raises(TomlProblems, match=rf"{path}:3:11: TOML syntax error: Invalid value"):
        load_settings(path)


def test_a_model_on_the_command_line_wins_over_a_server_in_the_settings(tmp_path: Path) -> None:
    """`simularity host` passes its model: a player's own settings.toml must not send the game elsewhere."""
    from simularity_tui import cli

    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('[model]\nbackend = "http://169.254.169.254/latest"\n')
    plain = cli.settings_with_overrides(cli.build_parser().parse_args(["--settings", str(settings_file)]))
    assert plain.remote_config() is not None  # the player's own choice, when nothing overrides it
    args = cli.build_parser().parse_args(["--settings", str(settings_file), "--model", str(tmp_path / "m.gguf")])
    assert cli.settings_with_overrides(args).remote_config() is None


@pytest.mark.model  # `simularity bench decode` imports llama.cpp first
def test_errors_quoting_untrusted_text_reach_the_terminal_as_text(tmp_path: Path) -> None:
    missing = tmp_path / "\x1b]52;c;SGFja2Vk\x07\x1b[2J.gguf"
    run = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "bench", "decode", "--model", str(missing)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "␛]52;c;SGFja2Vk␇␛[2J.gguf" in run.stderr and "\x1b" not in run.stderr and "\x07" not in run.stderr


# -- in the game: the first frame's reading, then the validation -----------------------------------


def test_the_first_frame_reads_only_what_it_shows_and_never_fails(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        '[ui]\ntheme = "midnight"\ngraphics = "halfcell"\n\n[game]\nscenarios_dir = "~/packs"\nmax_reply_tokens = "x"\n'
    )
    assert read_first_frame_settings(path) == FirstFrameSettings("halfcell", "midnight", "~/packs")
    broken = [
        '[ui]\ngraphics = "hologram"\ntheme = 3\n',  # wrong values: the defaults
        "[ui\ntheme = 'midnight'\n",  # a syntax error
        '[ui]\ntheme = "mid\\u001bnight"\n',  # a control character
        "[ui]\nx = " + "[" * 500 + "]" * 500 + "\n",  # nesting tomllib would recurse on
        "[ui]\ntheme = 'midnight'\n#" + "x" * 70_000 + "\n",  # bigger than a settings file is
    ]
    for text in broken:
        path.write_text(text)
        assert read_first_frame_settings(path) == FirstFrameSettings(), text[:40]
    assert read_first_frame_settings(tmp_path / "missing.toml") == FirstFrameSettings()
    assert read_first_frame_settings(tmp_path) == FirstFrameSettings()  # a directory
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert read_first_frame_settings(fifo) == FirstFrameSettings()  # at once, without a writer


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def game(argv: list[str], session: FakeSession) -> SimularityApp:
    """The game as `simularity ARGV` starts it (cli._play), on the fake model."""
    args = cli.build_parser().parse_args(["--graphics", "none", *argv])
    return SimularityApp(cli.launch_options(args, cli.first_frame_settings(args)), session=session)


def shown(app: SimularityApp) -> str:
    return " ".join(str(widget.render()) for widget in app.screen.query("Static"))


BAD_SETTINGS = '[ui]\ntheme = "midnight"\n\n[model]\nn_ctx = "big"\n\n[samplng]\ntemperature = 0.7\n'


@pytest.mark.parametrize("argv", [[], ["--pack", str(LIGHTHOUSE)]], ids=["library", "pack"])
async def test_a_bad_settings_file_stops_the_game_at_its_lines(fake_session: FakeSession, argv: list[str]) -> None:
    """Validated right after the first frame: the same problems, at the same lines, with the same
    hint as `simularity bench` or `run` print, on the game's error screen; the command then prints
    them again and exits 2 (app.error, as for a model that does not load)."""
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text(BAD_SETTINGS)
    app = game(argv, fake_session)
    async with app.run_test(size=(110, 36)) as pilot:
        await wait_for(lambda: isinstance(app.screen, ErrorScreen) and "Simularity cannot start" in shown(app))
        shown_text = shown(app)
        assert f"{path}:5:1: model.n_ctx: Input should be a valid integer" in shown_text
        assert f"{path}:7:1: unknown key 'samplng'; did you mean 'sampling'?" in shown_text
        assert f"Fix or delete {path}; every key is optional." in shown_text
        await pilot.press("q")
    with pytest.raises(TomlProblems) as on_the_command_line:
        cli.settings_with_overrides(cli.build_parser().parse_args([]))
    assert isinstance(app.error, TomlProblems) and app.error.render() == on_the_command_line.value.render()


async def test_a_bad_override_stops_the_game_as_before(fake_session: FakeSession) -> None:
    app = game(["--n-ctx", "100", "--pack", str(LIGHTHOUSE)], fake_session)
    async with app.run_test(size=(110, 36)):
        await wait_for(lambda: isinstance(app.screen, ErrorScreen) and "--n-ctx 100" in shown(app))
    assert app.error is not None
    assert app.error.render() == "--n-ctx 100: Input should be greater than or equal to 256\nSee simularity --help."


async def test_good_settings_reach_the_game_after_its_first_frame(fake_session: FakeSession) -> None:
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('[ui]\ntheme = "midnight"\n\n[game]\nmax_reply_tokens = 12\n')
    app = game(["--pack", str(LIGHTHOUSE)], fake_session)
    async with app.run_test(size=(110, 36)) as pilot:
        await wait_for(
            lambda: (
                type(app.screen).__name__ == "PlayScreen"
                and any("Say something as" in str(field.placeholder) for field in app.screen.query(Input))
            )
        )
        await pilot.pause()
        assert app.settings.game.max_reply_tokens == 12 and app.settings.ui.graphics == "none"
        assert app.saved is not None and app.saved.game.budgets.line == 12
        assert app.theme == "midnight" and app.error is None
