"""settings.toml: optional, validated, every problem reported at its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simularity_tui import paths
from simularity_tui.settings import Settings, load_settings, save_settings
from simularity_tui.toml_source import TomlProblems


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
