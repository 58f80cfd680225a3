"""Token budgets: what the model may write in each step of a turn, and what a pack may take of the
prompt, so that the story always has room in the context.

The prompt budget decides what of a pack reaches the model, not the pack's validator: a card may
carry a 40,000-character description, and the story still needs most of the context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..budget_defaults import DIRECTION_TOKENS, LINE_TOKENS
from ..engine import ModelSession
from .reminders import REMIND_EVERY

PINNED_SHARE = 0.5  # the pinned block (the world, the cast, what is always known, the summary)
NOTES_SHARE = 0.2  # the lore notes one line brings in, unless the pack's [lore_scan] budget says
EXAMPLES_SHARE = 0.15  # the characters' example lines, at most (a pack's `example_tokens` may ask for less)
SUMMARY_LABEL_TOKENS = 16  # "Summary of the story so far: " around a summary, in its room of the pinned block
REMINDER_SHARE = 0.1  # the reminders one line carries (the post-history instructions)
_FIT_ATTEMPTS = 4  # shortenings tried; each aims a little under the limit, so one or two suffice

log = logging.getLogger("simularity")


def lore_budget(tokens: int, n_ctx: int) -> int:
    """The tokens one line's lore notes may take: the pack's `[lore_scan] budget`, or when that is
    0, NOTES_SHARE of the context; never more than half of it, so that the story keeps room."""
    return min(tokens or int(n_ctx * NOTES_SHARE), n_ctx // 2)


@dataclass(frozen=True)
class Budgets:
    """Tokens the model may write for each step of a turn (`[game]` in the settings sets two)."""

    directions: int = DIRECTION_TOKENS  # a line's stage commands
    line: int = LINE_TOKENS  # the line itself
    summary: int = 120  # a summary of the lines the engine evicted
    # Not tokens: the most lines back the author's note and other reminders may drift (reminders.py).
    remind_every: int = REMIND_EVERY


def fitted(session: ModelSession, render: Callable[[float], str], share: float, *, pack_id: str) -> list[int]:
    """The tokens of `render(1.0)`, or, past `share` of the context, of the texts shortened to fit
    (`render(scale)` shortens each of the pack's texts to that share of its length)."""
    return fitted_at(session, render, share, pack_id=pack_id)[0]


def fitted_at(
    session: ModelSession, render: Callable[[float], str], share: float, *, pack_id: str
) -> tuple[list[int], float]:
    """As `fitted`, with the scale the texts were rendered at (the prompt inspector renders them
    again, part by part)."""
    limit = int(session.n_ctx * share)
    scale = 1.0
    tokens = session.tokenize(render(scale))
    for _attempt in range(_FIT_ATTEMPTS):
        if len(tokens) <= limit:
            break
        scale *= 0.95 * limit / len(tokens)
        tokens = session.tokenize(render(scale))
    if scale < 1.0:
        log.warning("%s: texts cut to %.0f%% to fit %d tokens of the context", pack_id, 100 * scale, limit)
    return tokens, scale
