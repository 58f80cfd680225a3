"""How large a context a model can have here: at most what it was trained for, and what the memory
left holds of its KV cache. Used for a context the player did not choose (the one a pack is written
for): a context the player chose is taken as asked, and refused with a reason when it cannot be.
"""

from __future__ import annotations

from pathlib import Path

from .gguf_file import inspect_gguf
from .memory import COMPUTE_OVERHEAD, available_memory

MIN_N_CTX = 512  # below this no story fits: a smaller memory is told so when the model loads
_STEP = 256  # a context cut to fit is a round number of tokens


def fitting_n_ctx(path: Path, wanted: int, *, n_gpu_layers: int = 0, loaded_n_ctx: int | None = None) -> int:
    """`wanted`, or as much of it as the model in `path` and the memory allow.

    `loaded_n_ctx`: the model is loaded already with a context of that size, which a new one
    replaces (its weights are in memory already, and its KV cache is given back first)."""
    gguf = inspect_gguf(path)
    n_ctx = min(wanted, gguf.context_length or wanted)
    per_token = gguf.kv_bytes_per_token
    if per_token:
        weights = gguf.size if n_gpu_layers == 0 and loaded_n_ctx is None else 0
        freed = per_token * (loaded_n_ctx or 0)
        room = available_memory() + freed - weights - COMPUTE_OVERHEAD
        n_ctx = min(n_ctx, max(room, 0) // per_token // _STEP * _STEP)
    return max(n_ctx, min(wanted, MIN_N_CTX))
