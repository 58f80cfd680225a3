"""Plain settings the engine takes: which model, how big a context, how to sample."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..sampling_fields import DEFAULT_DRY_SEQUENCE_BREAKERS

# The KV cache's type: q8_0 halves its memory and the state file beside a save (what resuming
# reads), at a small cost in accuracy that a context shift doubles (README). Not q4_0: after a
# shift the next token's distribution strays ~20 times as far as q8_0's (KL 0.26 on Gemma 3 270M).
KvCacheType = Literal["f16", "q8_0"]


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    n_ctx: int = 4096
    n_threads: int | None = None  # None: the physical core count
    n_gpu_layers: int = 0
    n_batch: int = 512
    context_shift: bool = True  # False: re-evaluate the kept window instead of shifting the KV
    template: str = "auto"  # the chat frame: "auto" (the GGUF's own), "raw", or a preset (chat_template.py)
    kv_cache: KvCacheType = "f16"


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8  # <= 0 means greedy
    top_k: int = 40  # 0 disables
    top_p: float = 0.95  # 1.0 disables
    min_p: float = 0.05  # 0.0 disables
    repeat_penalty: float = 1.1  # 1.0 disables
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0  # 0.0 disables; with presence_penalty, over the same repeat_last_n tokens
    presence_penalty: float = 0.0  # 0.0 disables
    typical_p: float = 1.0  # 1.0 disables
    # DRY ("don't repeat yourself"): a token that would extend a repeat of earlier text longer than
    # dry_allowed_length is penalised by multiplier * base ** (length - allowed). 0.0 disables.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1  # -1: the whole context
    dry_sequence_breakers: tuple[str, ...] = DEFAULT_DRY_SEQUENCE_BREAKERS
    # XTC ("exclude top choices"): with this probability, drop every token at least xtc_threshold
    # likely but the least likely of them. 0.0 disables.
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    # Mirostat (0 off, 1 v1, 2 v2): aims the draw at a surprise of tau; replaces top-k, typical-p,
    # top-p, min-p, XTC and the final draw, as in llama.cpp.
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
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
    # Room kept free after the prompt when more than `max_tokens`: reading ahead (max_tokens 0) for a
    # turn that will write this many makes the room then, so the turn itself never shifts.
    room: int = 0
    # Beside the story, leaving the model's context as it was (a summary written while the turn to
    # come waits, read and written ahead): only where the session has `aside_room` for it.
    aside: bool = False
