"""How large a context a model can have here: at most what it was trained for, and what the memory
left holds of its KV cache. Used for a context the player did not choose (the one a pack is written
for): a context the player chose is taken as asked, and refused with a reason when it cannot be.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import KvCacheType
from .gguf_file import inspect_gguf
from .kv_size import kv_cache_size
from .memory import largest_n_ctx, memory_limits

MIN_N_CTX = 512  # below this no story fits: a smaller memory is told so when the model loads
_STEP = 256  # a context cut to fit is a round number of tokens


def fitting_n_ctx(
    path: Path,
    wanted: int,
    *,
    n_gpu_layers: int = 0,
    offload: bool = False,
    loaded_n_ctx: int | None = None,
    cache_type: KvCacheType = "f16",
) -> int:
    """`wanted`, or as much of it as the model in `path` and the memory allow (memory.py's
    arithmetic, the same that refuses a context that does not fit).

    `loaded_n_ctx`: the model is loaded already with a context of that size, which a new one
    replaces (its weights are in memory already, and its KV cache is given back first)."""
    gguf = inspect_gguf(path)
    n_ctx = min(wanted, gguf.context_length or wanted)
    if gguf.kv:
        limits = memory_limits()
        if loaded_n_ctx is not None:  # count the weights and the old cache as free: they are ours already
            freed = gguf.size + kv_cache_size(gguf.kv, loaded_n_ctx, cache_type=cache_type).total
            space = None if limits.address_space is None else limits.address_space + freed
            limits = replace(limits, ram=limits.ram + freed, address_space=space)
        largest = largest_n_ctx(gguf, limits, gpu_layers=n_gpu_layers, offload=offload, cache_type=cache_type)
        n_ctx = min(n_ctx, largest // _STEP * _STEP)
    return max(n_ctx, min(wanted, MIN_N_CTX))
