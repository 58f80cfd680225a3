"""The context's KV memory and the exact token list it holds: the context-shift engine.

`tokens[i]` is the token whose keys and values sit at position i of sequence 0, always. Bringing
the KV to a new window evaluates only what it lacks:

- the longest common prefix is kept as it is;
- when whole turns were evicted right after that prefix (the window moved on), the evicted chunk
  is removed with `llama_memory_seq_rm` and everything after it slid left with `llama_memory_seq_add`
  (llama.cpp re-rotates the keys lazily): nothing is re-evaluated;
- when the pinned block's tail changed (a new summary, edited memory: the summary is its last part)
  and the KV holds the window's turns after the old block, the new tail is evaluated in place of
  the old one and the turns slid by the difference (`NativeContext.replace_span`): only the new
  tail is read, not the turns after it;
- whatever differs after that is evaluated.

The shift needs `llama_memory_can_shift` (false for M-RoPE models, for SWA models without a full
cache, or when the player turned it off) and a `seq_rm` that accepts a middle range (recurrent and
hybrid models refuse). Without either, the kept window is re-evaluated instead; `seq_add` is never
called then, since on such memory it aborts the process.

After a shift the last REFRESH_TOKENS kept tokens are evaluated again. Their keys were computed
while the evicted turns were still in view; the tokens nearest the next prediction weigh most in it,
and refreshing them brings the next turn closer to a fresh evaluation of the kept window (measured
on Gemma 3 270M over a following turn: mean per-token KL 0.012-0.014 -> 0.007-0.010, worst token
0.04-0.09 -> 0.015-0.04) for 16 tokens once per shift.
"""

from __future__ import annotations

from collections.abc import Sequence

from .context_window import LOW_WATER, Window, common_prefix
from .native import DecodeError, NativeContext, Progress

REFRESH_TOKENS = 16
MIN_SHIFT_KEEP = 16  # a shift that keeps fewer tokens than this is not worth it: re-evaluate them


class KvCache:
    def __init__(self, context: NativeContext, *, shift: bool) -> None:
        self.context = context
        self.tokens: list[int] = []
        self.n_keep = 0
        self.turn_starts: list[int] = []
        self.can_shift = shift and context.can_shift()
        self.shifted_out = 0  # tokens evicted by shifting since the start: never re-evaluated

    @property
    def n_ctx(self) -> int:
        return self.context.n_ctx

    def load(self, window: Window, evaluate_until: int, progress: Progress | None = None) -> int:
        """Make the KV hold `window.tokens[:evaluate_until]`; return how many tokens were evaluated.

        The last of them is evaluated again (its logits are what the next token is sampled from)
        unless the KV holds exactly these tokens and their last logits are still at hand: a prompt
        read ahead to its end in idle time is drawn from without reading anything.
        On `DecodeError` (`DecodeAborted` for a cancel) the KV holds a prefix of the window, and
        `tokens` says which.
        """
        target = window.tokens[:evaluate_until]
        if target == self.tokens and self.context.next_logits_at_hand(len(target) - 1):
            self.n_keep, self.turn_starts = window.n_keep, list(window.turn_starts)
            return 0
        common = min(common_prefix(self.tokens, target), len(target) - 1)
        spliced: int | None = 0
        if common < len(self.tokens):
            if common < self.n_keep:  # the pinned block changed: a new summary, edited memory
                spliced = self._replace_pinned_tail(common, target, window.n_keep)
                if spliced is None:
                    self._truncate(common)
            elif not self._shift_out_evicted(common, target):
                self._truncate(common)
        self.n_keep, self.turn_starts = window.n_keep, list(window.turn_starts)
        return (spliced or 0) + self._evaluate(target[len(self.tokens) :], progress)

    def append(self, tokens: Sequence[int]) -> None:
        """Evaluate generated tokens at the end, in one batch."""
        self.context.decode(tokens, len(self.tokens))
        self.tokens.extend(tokens)

    def make_room(self) -> tuple[int, int] | None:
        """Evict the oldest whole turns down to the low-water mark, keeping the last (open) turn.

        Returns (turns evicted, tokens re-evaluated), or None when only the open turn is left.
        """
        cuts = [start for start in self.turn_starts if start > self.n_keep]
        if not cuts:
            return None
        goal = LOW_WATER * self.n_ctx
        cut = next((start for start in cuts if len(self.tokens) - (start - self.n_keep) <= goal), cuts[-1])
        evicted_turns = sum(1 for start in self.turn_starts if start < cut)
        if self._shift(self.n_keep, cut):
            return evicted_turns, self._refresh(len(self.tokens))
        kept = self.tokens[: self.n_keep] + self.tokens[cut:]
        self.turn_starts = [start - (cut - self.n_keep) for start in self.turn_starts if start >= cut]
        self._truncate(self.n_keep)  # may empty the KV (memory that cannot drop a tail)
        return evicted_turns, self._evaluate(kept[len(self.tokens) :])

    # -- the operations -------------------------------------------------------------------------

    def _shift_out_evicted(self, common: int, target: Sequence[int]) -> bool:
        """If the KV holds `target[common:]` after a chunk of whole turns, cut the chunk out.

        The common prefix may run a little into the evicted chunk when its first turn begins like
        the first kept one ("Ash: …"): the chunk then starts `overshoot` tokens into that turn, and
        the kept part as far into its own.
        """
        aligned = max([self.n_keep, *(start for start in self.turn_starts if start <= common)])
        overshoot = common - aligned
        best_end, best_match = 0, 0
        for start in self.turn_starts:
            if start > aligned:
                match = common_prefix(self.tokens[start + overshoot :], target[common:])
                if match > best_match:
                    best_end, best_match = start + overshoot, match
        if best_match < MIN_SHIFT_KEEP or not self._shift(common, best_end):
            return False
        # Keep the match but its last REFRESH_TOKENS, which the caller evaluates again with the rest.
        self._truncate(max(common, common + best_match - REFRESH_TOKENS))
        return True

    def _replace_pinned_tail(self, common: int, target: Sequence[int], n_keep: int) -> int | None:
        """If the KV holds `target`'s turns after its old pinned block (the first of them perhaps
        evicted since), put the new pinned tail `target[common:n_keep]` in place of the old one and
        slide the turns, without reading them again; return the tokens evaluated, or None.

        The kept turns' keys were computed under the old tail: the last REFRESH_TOKENS of them are
        evaluated again, as after a shift (the module notes; the KL against a fresh evaluation is
        measured in tests/test_context_shift.py)."""
        if not self.can_shift or n_keep < common:
            return None
        best_start, best_match = 0, 0
        for start in [self.n_keep, *(start for start in self.turn_starts if start > self.n_keep)]:
            match = common_prefix(self.tokens[start:], target[n_keep:])
            if match > best_match:
                best_start, best_match = start, match
        if best_match < MIN_SHIFT_KEEP:
            return None
        # Keep the match but its last REFRESH_TOKENS, which the caller evaluates again with the rest;
        # what follows it goes first, so that the new tail finds free cells.
        self._truncate(best_start + max(0, best_match - REFRESH_TOKENS))
        if len(self.tokens) <= best_start:  # memory that could not drop the end: it is empty now
            return None
        tail = list(target[common:n_keep])
        try:
            if not self.context.replace_span(common, best_start, tail):
                return None
        except DecodeError:  # no room after all (the KV holds positions before `common` only)
            del self.tokens[common:]
            return None
        self.shifted_out += best_start - self.n_keep  # turns evicted since, never read again
        self.tokens[common:best_start] = tail
        return len(tail)

    def _shift(self, start: int, end: int) -> bool:
        """Remove positions [start, end) and slide the rest left, without re-evaluating them."""
        if not self.can_shift or not self.context.shift(start, end):
            return False
        removed = end - start
        del self.tokens[start:end]
        self.turn_starts = [s if s < start else s - removed for s in self.turn_starts if not start <= s < end]
        self.shifted_out += removed
        return True

    def _refresh(self, end: int) -> int:
        """Evaluate again the last REFRESH_TOKENS tokens before `end` (see the module notes)."""
        start = max(self.n_keep, end - REFRESH_TOKENS)
        again = self.tokens[start:end]
        self._truncate(start)
        return self._evaluate(again)

    def _truncate(self, length: int) -> None:
        if length >= len(self.tokens):
            return
        if not self.context.forget_from(length):  # memory that cannot drop a tail: start over
            self.context.clear()
            length = 0
        del self.tokens[length:]

    def _evaluate(self, tokens: Sequence[int], progress: Progress | None = None) -> int:
        start = len(self.tokens)
        try:
            self.context.decode(tokens, start, progress)
        except DecodeError as failed:  # aborted or not, what was decoded before stays in the KV
            self.tokens.extend(tokens[: failed.kept - start])
            raise
        self.tokens.extend(tokens)
        return len(tokens)
