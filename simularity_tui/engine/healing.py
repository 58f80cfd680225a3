"""Token healing: where a prompt ends, let the model choose how the last token really ends.

A prompt that ends in half a word ("…in the mount"), a space or a colon ends on a token the model
would rarely have chosen there, and it continues awkwardly. Healing rolls the last prompt token
back and constrains the first generated token(s) to ones consistent with the removed text: each
must start with what remains of it (" mountains") or be a prefix of it (" mount" + "ains").

The constraint is a mask over the logits, applied through the sampler's slow path only while text
remains to heal (usually one token); the rest of the generation runs unconstrained.
"""

from __future__ import annotations

import bisect
import ctypes
import heapq
import threading

import llama_cpp as C
import numpy as np

from .native import NativeModel

_RUN = 4096  # tokens between two looks at `stop`, and pieces sorted in one go


class PieceIndex:
    """Every token's bytes, sorted, to find the tokens that start with a given text quickly."""

    def __init__(self, pieces: list[bytes], order: list[int]) -> None:
        """`order`: the tokens with a piece, sorted by it (ties by token id)."""
        self._sorted = [pieces[token] for token in order]  # tokens of one piece lie side by side
        self._ids = np.array(order, dtype=np.int32)

    @classmethod
    def build(cls, model: NativeModel, stop: threading.Event | None = None) -> PieceIndex | None:
        """The index of `model`'s vocabulary (~0.5 s for 262k tokens); None if `stop` was set
        meanwhile (checked every few thousand tokens: a player's turn never waits for it)."""
        stopped = stop.is_set if stop is not None else lambda: False
        buffer = ctypes.create_string_buffer(256)
        pieces: list[bytes] = []
        for token in range(model.n_vocab):
            if token % _RUN == 0 and stopped():
                return None
            size = C.llama_token_to_piece(model.vocab, token, buffer, len(buffer), 0, False)
            pieces.append(buffer.raw[:size] if size > 0 else b"")
        # Sorted in runs, then merged: one `sorted` over 262k pieces is a single C call that holds
        # the GIL for ~0.1 s (the screen stalls meanwhile) and cannot be stopped. A run takes ~2 ms;
        # the merge is Python, which hands the GIL over between its steps. Token ids, not (piece,
        # token) pairs: 262k tuples would wake the cycle collector.
        key = pieces.__getitem__
        runs: list[list[int]] = []
        for start in range(0, len(pieces), _RUN):
            if stopped():
                return None
            runs.append(sorted(range(start, min(start + _RUN, len(pieces))), key=key))
        order: list[int] = []
        for count, token in enumerate(heapq.merge(*runs, key=key)):
            if count % _RUN == 0 and stopped():
                return None
            if pieces[token]:
                order.append(token)
        return cls(pieces, order)

    def consistent_with(self, text: bytes) -> np.ndarray:
        """Tokens that start with `text`, or are a non-empty prefix of it."""
        low = bisect.bisect_left(self._sorted, text)
        high = bisect.bisect_left(self._sorted, _just_after_prefix(text)) if text.strip(b"\xff") else len(self._sorted)
        prefixes = [self._exactly(text[:size]) for size in range(1, len(text))]
        return np.concatenate([self._ids[low:high], *prefixes])

    def _exactly(self, piece: bytes) -> np.ndarray:
        """The tokens whose piece is `piece`."""
        low = bisect.bisect_left(self._sorted, piece)
        return self._ids[low : bisect.bisect_right(self._sorted, piece, lo=low)]


def _just_after_prefix(text: bytes) -> bytes:
    """The smallest byte string greater than every string that starts with `text`."""
    stem = text.rstrip(b"\xff")
    return stem[:-1] + bytes([stem[-1] + 1])


class Healing:
    """The text still to heal, one generated token at a time."""

    def __init__(self, removed: bytes) -> None:
        self.removed = removed
        self.remaining = removed

    @property
    def active(self) -> bool:
        return bool(self.remaining)

    def accept(self, piece: bytes) -> None:
        if piece.startswith(self.remaining):
            self.remaining = b""
        else:
            self.remaining = self.remaining[len(piece) :]


def healable_tail(model: NativeModel, tokens: list[int], last_turn_start: int) -> int:
    """How many trailing tokens to roll back: one, if it belongs to the last turn (not to the
    pinned block or an earlier turn) and is text, not a control token."""
    if len(tokens) - 1 < max(last_turn_start, 1) or not model.piece(tokens[-1]):
        return 0
    return 1
