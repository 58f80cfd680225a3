"""What the model reads, in the shape the context-shift engine needs.

A prompt is a pinned block (system prompt, scenario, characters, summary: never evicted) followed by
whole turns, oldest first; the last turn is the one being written. The engine keeps the pinned
block and as many recent turns as fit, and evicts the oldest whole turns when they no longer do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    pinned: tuple[int, ...]
    turns: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, pinned: Sequence[int], turns: Sequence[Sequence[int]] = ()) -> Prompt:
        return cls(tuple(pinned), tuple(tuple(turn) for turn in turns))

    @classmethod
    def plain(cls, tokens: Sequence[int]) -> Prompt:
        """A token list with no turn structure: one turn, nothing pinned, nothing to evict."""
        return cls((), (tuple(tokens),))

    def flat(self) -> list[int]:
        """The tokens as the model reads them, one after another."""
        return [*self.pinned, *(token for turn in self.turns for token in turn)]

    def __len__(self) -> int:
        return len(self.pinned) + sum(len(turn) for turn in self.turns)
