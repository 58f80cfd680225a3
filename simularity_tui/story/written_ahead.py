"""The first steps of the turn to come, written in idle time for the line the player is typing.

A turn writes its stage line, then its line's head (`Mira (21:40):`), then the line's text
(turn.py), each step a generation of its own. The first two are the model's choices before the
first character of text shows: idle time writes them ahead for the typed line (idle_work.py), and
the turn that asks for the same generation (the same prompt, parameters and model) takes its
result instead of waiting for it. A generation depends on nothing else (its seed is among its
parameters, or fresh either way; the engine's window over a full context may start a turn later,
as any step's may), so the turn plays as it would have: with a fixed seed, the same line. Each
result serves one turn at most: a turn takes them all as it begins (a regenerated line draws
again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import GenerationParams, GenerationResult, ModelSession, Prompt

MAX_STEPS = 4  # two per typed line: the last two lines typed and paused on


@dataclass(frozen=True)
class WrittenStep:
    session: ModelSession
    prompt: Prompt
    params: GenerationParams
    text: str
    result: GenerationResult


class WrittenAhead:
    """Steps written ahead, found again by what they were asked."""

    def __init__(self) -> None:
        self._steps: list[WrittenStep] = []
        # The last typed line written ahead to its end: its turn's stage prompt, and the KV as
        # writing ahead left it, its text's prompt read (None where the head left no text to draw).
        self._finished: tuple[Prompt, tuple[int, ...] | None] | None = None

    def finish(self, stage_prompt: Prompt, held: Sequence[int] | None) -> None:
        """The turn that reads `stage_prompt` first is written ahead to its end, the model holding
        `held` (None: its head left no text to draw, nothing to hold)."""
        self._finished = (stage_prompt, None if held is None else tuple(held))

    def finished(self, stage_prompt: Prompt, held: Sequence[int]) -> bool:
        """Whether the turn that reads `stage_prompt` first is written ahead to its end, and the
        model, holding `held`, holds still what writing ahead left it: a summary written at the
        story's end takes the text's prompt's place in the KV, and then writing ahead again reads
        it again."""
        if self._finished is None or self._finished[0] != stage_prompt:
            return False
        left = self._finished[1]
        return left is None or tuple(held) == left

    def keep(self, step: WrittenStep) -> None:
        self._steps = [*self._steps[-(MAX_STEPS - 1) :], step]

    def find(self, session: ModelSession, prompt: Prompt, params: GenerationParams) -> WrittenStep | None:
        """The step written for exactly this generation, if any."""
        for step in self._steps:
            if step.session is session and step.prompt == prompt and step.params == params:
                return step
        return None
