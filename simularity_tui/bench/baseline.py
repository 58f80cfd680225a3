"""What every benchmark shares: the model path (joined with progress on first use) and the raw
llama-cpp-python `Llama` that baselines are measured with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from llama_cpp import Llama
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress

from ..engine import LlamaSession, ModelInfo, ModelSession, RemoteSession
from ..engine.amx import plain_layout_in_llama_cpp_python
from ..engine.config import SamplingParams
from ..engine.errors import OutOfMemoryError
from ..engine.gguf_file import inspect_gguf
from ..model_choice import model_path
from ..settings import Settings


def prepared_model_path(settings: Settings, override: Path | None, console: Console) -> Path:
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("Preparing the embedded model (first run only)", total=None)
        path = model_path(settings, override, lambda done, total: bar.update(task, completed=done, total=total))
    inspect_gguf(path)  # a bad file is explained before anything loads it
    return path


Play = Callable[[LlamaSession, Console], Coroutine[Any, Any, dict[str, Any]]]
AnyPlay = Callable[[ModelSession, Console], Coroutine[Any, Any, dict[str, Any]]]  # in-process or on a server


def measure_on_session(settings: Settings, override: Path | None, play: Play) -> tuple[Path, ModelInfo, dict[str, Any]]:
    """Load the model into a session, run `play` on it, close it: (model path, model, figures)."""
    console = Console(stderr=True)
    path = prepared_model_path(settings, override, console)
    session = LlamaSession.open_blocking(settings.model_config_for(path))
    try:
        figures = asyncio.run(play(session, console))
    finally:
        session.close_blocking()
    return path, session.info, figures


def measure_where_set(
    settings: Settings, override: Path | None, play: AnyPlay
) -> tuple[str, int | None, dict[str, Any]]:
    """`play` on the server `[model] backend` names, else on the model in-process: (where it ran,
    its threads (None: a server's are its own), figures)."""
    if settings.model.backend:
        where, figures = measure_on_server(settings, play)
        return where, None, figures
    path, model, figures = measure_on_session(settings, override, play)
    return str(path), model.n_threads, figures


def measure_on_server(settings: Settings, play: AnyPlay) -> tuple[str, dict[str, Any]]:
    """As `measure_on_session`, on the server `[model] backend` (--backend) names: (its URL, figures)."""
    remote = settings.remote_config()
    assert remote is not None
    session = RemoteSession.open_blocking(remote)
    try:
        figures = asyncio.run(play(session, Console(stderr=True)))
    finally:
        session.close_blocking()
    return f"{session.info.url} ({session.info.model})", figures


def baseline_sampling(sampling: SamplingParams) -> dict[str, float | int]:
    """The same sampler settings, as llama-cpp-python's `generate`/`create_completion` take them."""
    return {
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "min_p": sampling.min_p,
        "temp": sampling.temperature,
        "repeat_penalty": sampling.repeat_penalty,
    }


def load_baseline(path: Path, n_ctx: int, n_batch: int, threads: int, gpu_layers: int) -> Llama:
    plain_layout_in_llama_cpp_python()  # as the engine's: on a CPU with AMX, the layout that does not crash
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            verbose=False,
        )
    except ValueError as error:  # llama-cpp-python says only "Failed to create llama_context"
        raise OutOfMemoryError(
            f"The baseline could not load {path.name} beside the session ({error}); it reserves "
            "~500 MiB more than the session for its logits.",
            hint="Lower --n-ctx, or free memory, and run the benchmark again.",
            path=path,
        ) from None
