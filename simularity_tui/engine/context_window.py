"""Which part of a prompt the context holds: the pinned block and the most recent whole turns.

Shifts are made rare on purpose. While the window fits (with room for the reply), its first turn
stays where it is, so every new turn only appends. When the next turn would not fit, the oldest
turns are evicted in one chunk, down to the low-water mark: LOW_WATER = 0.6 of the context, which
leaves 40% for new turns before the next shift (with 1,024 tokens and ~55-token turns, one shift
every ~7 turns). Evicting down to 50% (llama.cpp's n_discard) would shift more rarely but keep less
of the story in view; 0.6 is the middle we chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import PromptTooLongError
from .prompt import Prompt

LOW_WATER = 0.6


@dataclass(frozen=True)
class Window:
    first_turn: int  # index in the prompt's turns of the oldest turn kept
    tokens: list[int]  # the pinned block, then the kept turns
    n_keep: int  # the pinned block's length
    turn_starts: list[int]  # where each kept turn starts in `tokens`
    cut_tokens: int  # tokens cut from the front of a single turn too long to fit whole (rare)


def plan_window(prompt: Prompt, n_ctx: int, reserve: int, first_turn: int) -> Window:
    """The window for `prompt`, keeping `first_turn` as its start while everything still fits.

    `reserve` is the room kept free for the reply. Raises `PromptTooLongError` only when the pinned
    block alone leaves no room: a conversation of any length always fits.
    """
    n_keep = len(prompt.pinned)
    budget = n_ctx - reserve
    if n_keep >= budget:
        raise PromptTooLongError(
            f"The pinned part of the prompt (scenario, characters, summary) has {n_keep:,} tokens; with "
            f"{reserve:,} kept free for the reply, a {n_ctx:,}-token context has no room for the story.",
            hint="Raise n_ctx (--n-ctx, or [model] n_ctx in settings.toml), or shorten the pack's prompts.",
        )
    turns = prompt.turns
    if not turns:
        return Window(0, list(prompt.pinned), n_keep, [], 0)
    sizes = [0] * (len(turns) + 1)  # sizes[i]: tokens of turns[i:]
    for index in range(len(turns) - 1, -1, -1):
        sizes[index] = sizes[index + 1] + len(turns[index])
    first = min(first_turn, len(turns) - 1)
    if n_keep + sizes[first] > budget:
        target = min(int(LOW_WATER * n_ctx), budget)
        while first < len(turns) - 1 and n_keep + sizes[first] > target:
            first += 1
    tokens = list(prompt.pinned)
    starts = []
    for turn in turns[first:]:
        starts.append(len(tokens))
        tokens.extend(turn)
    cut = max(0, len(tokens) - budget)  # only when the last turn alone is longer than the budget
    if cut:
        del tokens[n_keep : n_keep + cut]
    return Window(first, tokens, n_keep, [start - cut if start > n_keep else start for start in starts], cut)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens two token lists share from their start: what the KV (or a server's cache) keeps."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def unread(held: Sequence[int], prompt: Prompt) -> int:
    """How many tokens of `prompt` a model holding `held` would read for it."""
    flat = prompt.flat()
    return len(flat) - common_prefix(held, flat)
