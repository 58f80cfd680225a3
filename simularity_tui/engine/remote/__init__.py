"""A model on an OpenAI-compatible server (llama-server, vLLM, SGLang, llama-cpp-python's server).

`RemoteSession` fits the same `ModelSession` surface as the in-process `LlamaSession`: the story
layer plays on either without knowing which. The session and errors (and httpx) load lazily, as in `engine`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .config import RemoteConfig

if TYPE_CHECKING:
    from .errors import RemoteBackendError
    from .session import RemoteInfo, RemoteSession

_LAZY = {
    "RemoteBackendError": ".errors",
    "RemoteInfo": ".session",
    "RemoteSession": ".session",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RemoteBackendError", "RemoteConfig", "RemoteInfo", "RemoteSession"]
