"""What the engine answers with: a finished generation, the model in use, a restored KV state.

Plain data, apart from the engine that fills it in: the story and the UI import these without
loading llama.cpp (the first frame comes before the model; see ui/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .chat_template import RAW, ChatFrame

StopReason = Literal["eos", "stop", "length", "context_full", "cancelled"]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    description: str  # llama.cpp's one-line description, e.g. "gemma3 270M Q4_K - Medium"
    identity: str  # a fingerprint of the file, which KV state files are keyed by
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    context_shift: bool  # False: the model cannot shift, or the player turned it off
    n_vocab: int | None = None  # token ids run 0..n_vocab-1: a save's tokens are checked against it
    chat_frame: ChatFrame = RAW  # how the story is framed for this model ([model] template)


@dataclass(frozen=True)
class GenerationResult:
    text: str  # what was streamed: new text after the prompt, up to (not including) a stop string
    tokens: tuple[int, ...]  # generated tokens, minus any wholly after `text`; see `healed_tokens`
    tail_text: str  # the end of `text` no token of `tokens` covers (one straddled the stop string)
    healed_tokens: int  # prompt tokens rolled back: `tokens` begins by re-writing their text
    healing_steps: int  # tokens sampled under the healing constraint (the slow path)
    stop_reason: StopReason
    stop_string: str | None
    seed: int
    first_turn: int  # index of the oldest prompt turn the context still holds
    evaluated_tokens: int  # tokens evaluated that were not generated: the prompt's new part, refreshes
    shifted_tokens: int  # tokens evicted by shifting the KV, during this generation
    generated_tokens: int
    prefill_s: float
    first_token_s: float  # from the start of the job (not the queue) to the first sampled token
    decode_s: float  # from the first sampled token to the last

    @property
    def tokens_per_second(self) -> float:
        return (self.generated_tokens - 1) / self.decode_s if self.generated_tokens > 1 and self.decode_s else 0.0


@dataclass(frozen=True)
class RestoredState:
    tokens: int  # how many tokens the KV now holds from the file (0: nothing restored)
    warning: str | None  # why the file was not used, to be shown to the player
