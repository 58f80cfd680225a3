"""The model a game plays on, opened: a server when a backend URL is set, else a GGUF file in-process.

With a backend, no local model is prepared or loaded at all (the embedded one is not even joined).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

from .engine import ModelSession
from .engine.embedded_model import Progress
from .model_choice import model_path
from .settings import Settings


async def open_model_session(
    settings: Settings, model_override: Path | None = None, progress: Progress | None = None
) -> ModelSession:
    remote = settings.remote_config()
    if remote is not None:
        session_module = await asyncio.to_thread(importlib.import_module, "simularity_tui.engine.remote.session")
        return await session_module.RemoteSession.open(remote)
    path = await asyncio.to_thread(model_path, settings, model_override, progress)
    # Imported here, off the event loop: llama.cpp takes a third of a second to import.
    session_module = await asyncio.to_thread(importlib.import_module, "simularity_tui.engine.session")
    return await session_module.LlamaSession.open(settings.model_config_for(path))


def open_model_session_blocking(settings: Settings, model_override: Path | None = None) -> ModelSession:
    """The same from synchronous code (benchmarks)."""
    from .engine import LlamaSession, RemoteSession

    remote = settings.remote_config()
    if remote is not None:
        return RemoteSession.open_blocking(remote)
    return LlamaSession.open_blocking(settings.model_config_for(model_path(settings, model_override)))
