"""Plain settings the engine takes: which model, how big a context, how to sample."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    n_ctx: int = 4096
    n_threads: int | None = None  # None: the physical core count
    n_gpu_layers: int = 0
    n_batch: int = 512
    context_shift: bool = True  # False: re-evaluate the kept window instead of shifting the KV


# llama.cpp's repeat penalty keeps a ring of this many tokens (4 bytes each): one billion would be
# 4 GB for one line. More than the largest context is never needed.
MAX_REPEAT_LAST_N = 1 << 16
MAX_TOP_K = 1 << 20


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8  # <= 0 means greedy
    top_k: int = 40  # 0 disables
    top_p: float = 0.95  # 1.0 disables
    min_p: float = 0.05  # 0.0 disables
    repeat_penalty: float = 1.1  # 1.0 disables
    repeat_last_n: int = 64
    seed: int | None = None  # None: a fresh random seed for every generation


def fresh_seed() -> int:
    """The seed of a generation whose `SamplingParams.seed` is None (here, not in sampling.py: a
    model server needs one too, without llama.cpp)."""
    return secrets.randbits(32)


@dataclass(frozen=True)
class GenerationParams:
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 256
    stop: Sequence[str] = ()
    grammar: str | None = None  # GBNF text, root rule "root"
    heal: bool = True  # token healing at the prompt's end (not with a grammar, which sets the start)
