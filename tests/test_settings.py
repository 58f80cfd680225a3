"""settings.toml: optional, validated, every problem reported at its line."""

from __future__ import annotations

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
