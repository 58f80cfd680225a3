"""Idle time: the work the next line would otherwise wait for, done while the player reads and types.

Three things, in order. The summary of lines the engine evicted, when no summary covers them yet;
kept, it goes into the pinned block without a re-read of the lines after it (summary.py,
engine/kv_cache.py), and the game autosaves it. Then reading ahead: whatever of the story the
model has not read yet (the new summary, a story just opened or resumed without its KV state) is
read now, and with it the line the player is typing (the draft) and what the turn after it would
read before writing (its lore notes, the reminders due, `[stage:`, turn.py `Opening`): sent as
typed, the line's turn reads one token before it writes. Last, that turn's first steps are written
ahead (its stage line and its line's head: written_ahead.py), so that the line's text starts at
once when the player sends the line as typed. The screen runs this after every turn,
when a story opens and when the player pauses typing; the player's next action cancels it at once
(the engine aborts between graph nodes) and the next idle time starts again, so a turn never waits
for it. Benchmarks run it between turns, scripts its summary alone. A summary that fails (a model
server gone, say) is logged and the lines stay in the prompt, as when a summary comes back empty;
the next idle time tries again. Reading ahead makes the room the turn to come needs: any shift
happens then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..engine import GenerationParams, GenerationResult, GenerationStream, Prompt, SamplingParams
from ..engine.context_window import common_prefix
from ..errors import UserFacingError
from ..text_rules import one_line
from .summary import SummaryRequest
from .turn import Turn

if TYPE_CHECKING:
    from .game import Game

log = logging.getLogger("simularity")
READ_AHEAD_MIN = 8  # tokens of the story the model lacks before reading ahead is worth a generation
_READ_ONLY = GenerationParams(sampling=SamplingParams(temperature=0.0), max_tokens=0, heal=False)  # read, write nothing


def unread(session_tokens: tuple[int, ...], prompt: Prompt) -> int:
    """How many tokens of `prompt` the model would read for it, from what it holds."""
    flat = [*prompt.pinned, *(token for turn in prompt.turns for token in turn)]
    return len(flat) - common_prefix(session_tokens, flat)


class IdleWork:
    """The idle work due: `run()` it, `cancel()` it; `kept` says whether a summary reached the story."""

    def __init__(
        self,
        game: Game,
        request: SummaryRequest | None,
        draft: Callable[[], str] | None = None,
        *,
        read_ahead: bool = True,
        write_ahead: bool = True,
    ) -> None:
        self._game = game
        self._request = request
        self._reads_ahead = read_ahead
        self._writes_ahead = write_ahead
        self._draft = draft  # the player's line being typed, as it is when reading ahead begins
        self._head = game.tree.head  # the story it summarises: kept only if still the one in play
        self._generation: GenerationStream | None = None
        self._turn: Turn | None = None  # the turn being written ahead
        self.cancelled = False
        self.kept = False
        self.seconds = 0.0  # how long the work took (cancelled or not)
        self.summary_seconds = 0.0  # of which writing the summary

    @property
    def summarising(self) -> bool:
        """Whether a summary is due (else only reading ahead)."""
        return self._request is not None

    def cancel(self) -> None:
        self.cancelled = True
        if self._generation is not None:
            self._generation.cancel()
        if self._turn is not None:
            self._turn.cancel()

    async def run(self) -> bool:
        """Write the summary due and keep it, then read ahead and write the typed line's turn
        ahead; whether a summary was kept (False when there was none to write, or it was
        cancelled, failed or empty)."""
        started = time.perf_counter()
        try:
            if self._request is not None:
                self.kept = await self._remember(self._request)
                self.summary_seconds = time.perf_counter() - started
            if self._reads_ahead and not self.cancelled and (self._request is None or self.kept):
                typed = self._draft() if self._draft is not None else ""
                await self._read_ahead(typed)
                if self._writes_ahead and one_line(typed) and not self.cancelled and self._game.tree.head == self._head:
                    await self._write_ahead(typed)
        except UserFacingError as error:
            what = "no summary this time, the lines stay in the prompt" if self._request else "nothing read ahead"
            log.warning("%s: %s", what, error.message)
        finally:
            self.seconds = time.perf_counter() - started
        return self.kept

    async def _remember(self, request: SummaryRequest) -> bool:
        written = await self._generate(request.prompt, request.params)
        summary = " ".join(written.text.split()) if written is not None else ""
        if self.cancelled or not summary or self._game.tree.head != self._head:
            return False
        self._game.keep_summary(request, summary)
        return True

    async def _read_ahead(self, typed: str) -> None:
        game = self._game
        budgets = game.budgets  # room for the turn to come: any shift it needs happens now
        params = replace(_READ_ONLY, room=budgets.directions + budgets.line)
        for _pass in range(2):  # a second pass where making room changed what the turn reads
            window = game.window_start
            await game.session.tokens_ahead(lambda: game.read_ahead_prompt(typed))  # a server's, off the loop
            prompt = game.read_ahead_prompt(typed)
            if unread(game.session.kv_tokens, prompt) < READ_AHEAD_MIN:
                return
            read = await self._generate(prompt, params)
            if read is None or game.tree.head != self._head:
                return
            game.read_ahead_window(read.first_turn)
            if game.window_start == window:
                return
            # Lines left the window: their lore notes may come back, a reminder may be due again.

    async def _write_ahead(self, typed: str) -> None:
        """The first steps of the turn the line `typed` would bring, written into the game's
        `written_ahead` (steps written for it before are found there, not written again)."""
        game = self._game
        stage_prompt = game.read_ahead_prompt(typed)
        if game.written_ahead.finished == stage_prompt:
            return
        self._turn = Turn(game.looking_ahead(typed), game.sampling.seed, ahead_only=True)
        await self._turn.finish()
        head = self._turn.head
        if not self.cancelled and head is not None and head.stop_reason != "cancelled":
            game.written_ahead.finished = stage_prompt

    async def _generate(self, prompt: Prompt | list[int], params: GenerationParams) -> GenerationResult | None:
        """A generation run to its end (None when it was cancelled)."""
        if self.cancelled:
            return None
        self._generation = generation = self._game.session.generate(prompt, params)
        async for _piece in generation:
            pass
        result = await generation.result()
        return None if result.stop_reason == "cancelled" else result
