"""Which quantizations fit this machine, judged on memory before anything is downloaded.

llama.cpp maps the whole file into memory and adds the KV cache and its compute buffers. A file
*fits* when its size plus `MARGIN` is at most the memory available now (engine/memory.py: the
system's available memory, a cgroup's allowance, an address-space limit, whichever is least); it is
*tight* when that is more than is available now but not more than the machine has (close other
programs first); else it is *too big*. `MARGIN` is 1 GiB: the f16 KV cache of a 4,096-token context
on the largest catalogue models (Mistral Nemo 12B: 40 layers × 8 KV heads × (128 + 128) × 2 bytes =
160 KiB a token, 640 MiB) and llama.cpp's buffers. A GPU build that offloads layers needs less
memory than this says; GPU memory is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import psutil

from ..engine.memory import available_memory

MARGIN = 1 << 30
Verdict = Literal["fits", "tight", "too big"]


@dataclass(frozen=True)
class Memory:
    available: int  # bytes this process may still use
    total: int  # bytes the machine has


def machine_memory() -> Memory:
    total: int = psutil.virtual_memory().total
    return Memory(available=min(available_memory(), total), total=total)


def judge(size: int, memory: Memory) -> Verdict:
    needed = size + MARGIN
    if needed <= memory.available:
        return "fits"
    return "tight" if needed <= memory.total else "too big"


def largest_fitting(sizes: Mapping[str, int], memory: Memory) -> str | None:
    """The quantization with the largest file that fits (the best quality the machine can play)."""
    fitting = [(size, quant) for quant, size in sizes.items() if judge(size, memory) == "fits"]
    return max(fitting)[1] if fitting else None


def how_judged(memory: Memory) -> str:
    """One line on how the verdicts were reached, for the list and the screen."""
    return (
        f"Memory: {memory.available / 1e9:.1f} GB available of {memory.total / 1e9:.1f} GB. A file fits when it and "
        f"{MARGIN >> 30} GiB more (a 4,096-token context and llama.cpp's buffers) are at most what is available; "
        "GPU memory is not counted."
    )
