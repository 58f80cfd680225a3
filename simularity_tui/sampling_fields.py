"""The sampling settings' types and ranges, shared by settings.toml's `[sampling]` (settings.py) and a
pack's recommended `[sampling]` preset (scenario/schema.py), so that one value is valid in both or in
neither. Pure data: no llama.cpp here (the pack format may not import the engine).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

# llama.cpp's repeat penalty keeps a ring of this many tokens (4 bytes each): one billion would be
# 4 GB for one line. More than the largest context is never needed.
MAX_REPEAT_LAST_N = 1 << 16
MAX_TOP_K = 1 << 20
MAX_BREAKERS = 64
MAX_BREAKER_CHARS = 40  # llama.cpp's DRY cuts a longer breaker there anyway

DEFAULT_DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")  # llama.cpp's defaults


def _breaker(value: str) -> str:
    # Handed to C as a NUL-terminated string: a NUL inside would silently cut it short.
    if "\x00" in value:
        raise ValueError("a sequence breaker may not contain a NUL character")
    return value


Temperature = Annotated[float, Field(ge=0.0, le=5.0, description="0 is greedy: always the likeliest token.")]
TopK = Annotated[int, Field(ge=0, le=MAX_TOP_K, description="Only the k likeliest tokens (0: all).")]
TopP = Annotated[float, Field(gt=0.0, le=1.0, description="Only the likeliest tokens that add up to p.")]
MinP = Annotated[float, Field(ge=0.0, lt=1.0, description="Leave out tokens less likely than p × the likeliest.")]
RepeatPenalty = Annotated[float, Field(gt=0.0, le=5.0, description="1.0: none.")]
RepeatLastN = Annotated[int, Field(ge=0, le=MAX_REPEAT_LAST_N, description="Tokens looked back for repeats.")]
FrequencyPenalty = Annotated[
    float, Field(ge=-2.0, le=2.0, description="Lower a token by this much for each time it was said (0: none).")
]
PresencePenalty = Annotated[
    float, Field(ge=-2.0, le=2.0, description="Lower a token by this much once it was said at all (0: none).")
]
TypicalP = Annotated[float, Field(gt=0.0, le=1.0, description="Locally typical sampling (1.0: off).")]
DryMultiplier = Annotated[
    float, Field(ge=0.0, le=10.0, description="DRY: how hard repeating earlier text is penalised (0: off; try 0.8).")
]
DryBase = Annotated[float, Field(gt=1.0, le=8.0, description="DRY: the penalty grows by this factor per token.")]
DryAllowedLength = Annotated[int, Field(ge=1, le=100, description="DRY: repeats this long are free.")]
DryPenaltyLastN = Annotated[
    int, Field(ge=-1, le=MAX_REPEAT_LAST_N, description="DRY: tokens looked back (-1: the whole context).")
]
DrySequenceBreaker = Annotated[str, Field(min_length=1, max_length=MAX_BREAKER_CHARS), AfterValidator(_breaker)]
DrySequenceBreakers = Annotated[
    list[DrySequenceBreaker],
    Field(max_length=MAX_BREAKERS, description="DRY: a repeat never runs across these strings."),
]
XtcProbability = Annotated[
    float, Field(ge=0.0, le=1.0, description="XTC: how often the likeliest tokens are left out (0: off).")
]
XtcThreshold = Annotated[float, Field(ge=0.0, le=0.5, description="XTC: tokens at least this likely are cut.")]
Mirostat = Annotated[int, Field(ge=0, le=2, description="0: off; 2: mirostat v2 (1: v1), in place of top-k/p.")]
MirostatTau = Annotated[float, Field(gt=0.0, le=20.0, description="Mirostat: the surprise aimed at.")]
MirostatEta = Annotated[float, Field(gt=0.0, le=1.0, description="Mirostat: how fast it adapts.")]
Seed = Annotated[int, Field(ge=0, lt=1 << 32, description="Unset: a fresh seed per reply.")]
