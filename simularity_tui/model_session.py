"""The model a game plays on, opened: a server when a backend URL is set, else a GGUF file in-process.

With a backend, no local model is prepared or loaded at all (the embedded one is not even joined).

The context: the player's `n_ctx` when they set one (`[model] n_ctx`, `--n-ctx`); else the one the
pack is written for (`recommended_n_ctx`), within what the model
was trained for and what the memory holds; else the default. The TUI loads its model before a pack
is chosen: when the game's pack wants another context, `fit_context` makes one on the weights
already loaded (no reload). A server's context is the server's: it is left as it is.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import replace
from pathlib import Path

from .engine import ModelSession
from .engine.embedded_model import Progress
from .model_choice import model_path
from .scenario.schema import Pack
from .settings import Settings


async def open_model_session(
    settings: Settings,
    model_override: Path | None = None,
    progress: Progress | None = None,
    *,
    pack: Pack | None = None,
) -> ModelSession:
    """The model, with the context a game of `pack` plays in (when given)."""
    remote = settings.remote_config()
    if remote is not None:
        session_module = await asyncio.to_thread(importlib.import_module, "simularity_tui.engine.remote.session")
        return await session_module.RemoteSession.open(remote)
    path = await asyncio.to_thread(model_path, settings, model_override, progress)
    config = settings.model_config_for(path)
    if pack is not None:
        config = replace(config, n_ctx=await asyncio.to_thread(context_for, settings, pack, path))
    # Imported here, off the event loop: llama.cpp takes a third of a second to import.
    session_module = await asyncio.to_thread(importlib.import_module, "simularity_tui.engine.session")
    return await session_module.LlamaSession.open(config)


def open_model_session_blocking(settings: Settings, model_override: Path | None = None) -> ModelSession:
    """The same from synchronous code (benchmarks)."""
    from .engine import LlamaSession, RemoteSession

    remote = settings.remote_config()
    if remote is not None:
        return RemoteSession.open_blocking(remote)
    return LlamaSession.open_blocking(settings.model_config_for(model_path(settings, model_override)))


def written_for(pack: Pack) -> int | None:
    """The context, in tokens, the pack says it is written for, if it says."""
    return pack.recommended_n_ctx


def wanted_context(settings: Settings, pack: Pack) -> int:
    """The context a game of `pack` asks for: the player's n_ctx if they set one, else the pack's."""
    if "n_ctx" in settings.model.model_fields_set:  # settings.toml or --n-ctx: the player's word wins
        return settings.model.n_ctx
    return written_for(pack) or settings.model.n_ctx


def context_for(settings: Settings, pack: Pack, path: Path) -> int:
    """The context a game of `pack` plays in on the model at `path`: a size the pack asked for is
    cut to what the model and the memory allow; the player's own is taken as it is."""
    wanted = wanted_context(settings, pack)
    if wanted == settings.model.n_ctx:
        return wanted
    from .engine.context_size import fitting_n_ctx

    return fitting_n_ctx(path, wanted, n_gpu_layers=settings.gpu_layers_for(path), cache_type=settings.model.kv_cache)


async def fit_context(session: ModelSession, settings: Settings, pack: Pack) -> None:
    """Give a game of `pack` its context on a model loaded already (in-process: re-created on the
    same weights; a server's is the server's)."""
    resize = getattr(session, "resize", None)  # LlamaSession's; a server or a test's session has none
    wanted = wanted_context(settings, pack)
    if resize is not None and wanted != session.n_ctx:
        await resize(wanted)
