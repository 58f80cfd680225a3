"""Every bad model input gets a message naming the file and what to do: on the command line (exit 2,
no traceback) and in the game (an error screen)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from simularity_tui.engine import ModelConfig
from simularity_tui.engine.errors import ContextSizeError, ModelFileError, ModelLoadError
from simularity_tui.engine.gguf_file import inspect_gguf

# Every test runs `simularity bench decode`, which loads llama.cpp (and the model, where it can).
pytestmark = pytest.mark.model


def simularity(
    *args: str, limit_address_space_mib: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command line (bench decode loads the model like the game does)."""
    preexec = None
    if limit_address_space_mib is not None:
        import resource

        limit = limit_address_space_mib << 20

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
        env={**os.environ, **(env or {})},
    )


def assert_explained(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


@pytest.fixture
def truncated(model_path: Path, tmp_path: Path) -> Path:
    cut = tmp_path / "half.gguf"
    with model_path.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(model_path.stat().st_size // 2))
    return cut


@pytest.fixture
def alien(tmp_path: Path) -> Path:
    """A well-formed GGUF for an architecture llama.cpp does not know."""
    path = tmp_path / "alien.gguf"
    writer = GGUFWriter(path, "alienarch")
    writer.add_context_length(4096)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelFileError, match="not found"):
        inspect_gguf(missing)
    assert_explained(simularity("bench", "decode", "--model", str(missing)), str(missing), "Check the path")


def test_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("these are not weights\n" * 10)
    assert_explained(simularity("bench", "decode", "--model", str(text)), str(text), "not a GGUF model file")


def test_a_truncated_gguf(truncated: Path) -> None:
    assert_explained(
        simularity("bench", "decode", "--model", str(truncated)), str(truncated), "incomplete GGUF", "again"
    )


def test_a_gguf_llama_cpp_refuses(alien: Path) -> None:
    from simularity_tui.engine.worker import EngineWorker  # llama.cpp: not at collection

    # Every refusal is explained, long after llama.cpp's bounded list of recent problems filled up
    # (each refusal logs two; a long session or test run logs many).
    for _ in range(24):
        with pytest.raises(ModelLoadError, match="unknown model architecture: 'alienarch'"):
            EngineWorker.load(ModelConfig(alien, n_ctx=512))
    assert_explained(simularity("bench", "decode", "--model", str(alien)), str(alien), "alienarch")


def test_a_context_above_the_training_size(model_path: Path) -> None:
    from simularity_tui.engine.worker import EngineWorker

    with pytest.raises(ContextSizeError, match="32,768"):
        EngineWorker.load(ModelConfig(model_path, n_ctx=65536))
    assert_explained(simularity("--n-ctx", "40000", "bench", "decode"), model_path.name, "Set n_ctx to 32,768 or less")


def test_not_enough_memory(model_path: Path) -> None:
    # A real limit: 800 MiB of address space (Python and its libraries take ~250) cannot hold the
    # weights (241 MiB) and a 32k-token KV cache (576 MiB).
    run = simularity("--n-ctx", "32768", "bench", "decode", limit_address_space_mib=800)
    assert_explained(run, "Not enough memory", model_path.name, "Lower n_ctx")


def test_bad_settings_point_at_the_line(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[model]\nn_ctx = "big"\n\n[samplng]\ntemperature = 0.7\n')
    run = simularity("--settings", str(settings), "bench", "decode")
    assert_explained(
        run, f"{settings}:2:1: model.n_ctx", f"{settings}:4:1: unknown key 'samplng'; did you mean 'sampling'?"
    )
