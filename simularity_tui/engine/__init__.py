"""Talking to a model: llama.cpp in-process, or an OpenAI-compatible server. Knows nothing of stories.

The sessions load lazily: llama.cpp (and numpy, gguf, httpx) take a third of a second to import,
and the game draws its first frame before it needs them. Everything else here is plain data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .backend import BackendInfo, GenerationStream, ModelSession
from .config import GenerationParams, ModelConfig, SamplingParams
from .prompt import Prompt
from .results import GenerationResult, ModelInfo, RestoredState

if TYPE_CHECKING:
    from .remote import RemoteBackendError, RemoteConfig, RemoteSession
    from .session import Generation, LlamaSession
    from .vocab_session import VocabSession

_LAZY = {
    "Generation": ".session",
    "LlamaSession": ".session",
    "RemoteBackendError": ".remote",
    "RemoteConfig": ".remote",
    "RemoteSession": ".remote",
    "VocabSession": ".vocab_session",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendInfo",
    "Generation",
    "GenerationParams",
    "GenerationResult",
    "GenerationStream",
    "LlamaSession",
    "ModelConfig",
    "ModelInfo",
    "ModelSession",
    "Prompt",
    "RemoteBackendError",
    "RemoteConfig",
    "RemoteSession",
    "RestoredState",
    "SamplingParams",
    "VocabSession",
]
