"""Idle time: the work the next line would otherwise wait for, done while the player reads and types.

Three things. Reading ahead: whatever of the story the model has not read yet (a new summary, a
story just opened or resumed without its KV state) is read now, and with it the line the player
is typing (the draft) and what the turn after it would read before writing (its lore notes, the
reminders due, `[stage:`, turn.py `Opening`). Then that turn's first steps are written ahead (its
stage line and its line's head: written_ahead.py), and the head's end, which its grammar forced, is
read: sent as typed, the line's text is drawn at once from logits the engine kept, with nothing
to read (engine/native.py keeps them through a summary written aside). Where something else took
that prompt's place in the KV since (a summary written at the story's end), it is read again.
And the summary of lines the engine evicted, when no summary covers them yet; kept, it goes into
the pinned block without a re-read of the lines after it (summary.py, engine/kv_cache.py).

Their order depends on the model's room aside (`ModelSession.aside_room`). With it, the summary
comes last and is written beside the story, so that the turn read and written ahead stays in the
KV: a line sent while the summary is being written starts at once, and a summary written waits
for the next idle time to join the prompt (`Game.summary_waiting`: the turn written ahead was
read without it). Without it (a model server), the summary's request takes the place of what
follows the story in the KV, so it comes first, is kept at once, and reading ahead follows it.

The screen runs this after every turn, when a story opens and when the player pauses typing; the
player's next action cancels it at once (the engine aborts between graph nodes) and the next idle
time starts again, so a turn never waits for it. Benchmarks run it between turns, scripts its
summary alone. A summary that fails (a model server gone, say) is logged and the lines stay in the
prompt, as when a summary comes back empty; the next idle time tries again. Reading ahead makes
the room the turn to come needs: any shift happens then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..engine import GenerationParams, GenerationResult, GenerationStream, Prompt
from ..engine.context_window import unread
from ..errors import UserFacingError
from ..text_rules import one_line
from .summary import SummaryRequest
from .turn import READ_ONLY, Turn

if TYPE_CHECKING:
    from .game import Game

log = logging.getLogger("simularity")
READ_AHEAD_MIN = 8  # tokens of the story the model lacks before reading ahead is worth a generation


class IdleWork:
    """The idle work due: `run()` it, `cancel()` it; `written` says whether a summary was written."""

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
        # Beside the story, last: only where the model has room aside and a turn is read ahead for.
        self._aside = read_ahead and game.session.aside_room > 0
        self._generation: GenerationStream | None = None
        self._turn: Turn | None = None  # the turn being written ahead
        self._displacing = False  # a summary at the story's end being written: a line sent waits for the KV
        self._summary_begun = False
        self._refused = False  # the last generation found no room (a request aside)
        self._on_summary: Callable[[], None] | None = None
        self.cancelled = False
        self.written = False  # a summary was written (kept, or waiting for the next idle time)
        self.read_tokens = 0  # of the story, read ahead (a summary's own are not counted)
        self.seconds = 0.0  # how long the work took (cancelled or not)
        self.summary_seconds = 0.0  # of which writing the summary

    @property
    def summarising(self) -> bool:
        """Whether a summary is being written, or due first (else reading ahead, and with room
        aside writing the turn ahead: a summary comes after them, `run`'s `on_summary` says when)."""
        return self._summary_begun or (self._request is not None and not self._aside)

    @property
    def summary_in_the_way(self) -> bool:
        """Whether a line sent now would find a summary in its way: one written at the story's end,
        whose request took the place of what was read ahead (never one written aside)."""
        return self._displacing

    def cancel(self) -> None:
        self.cancelled = True
        if self._generation is not None:
            self._generation.cancel()
        if self._turn is not None:
            self._turn.cancel()

    async def run(self, on_summary: Callable[[], None] | None = None) -> bool:
        """The summary waiting from the last idle time joins the prompt; then the summary due, read
        ahead and the typed line's turn written ahead, in the order the model's room allows (the
        module notes); `on_summary` is called as a summary begins. Whether the prompt changed (a
        summary was kept)."""
        self._on_summary = on_summary
        started = time.perf_counter()
        game = self._game
        changed = False
        try:
            changed = game.keep_waiting_summary()
            if self._request is not None and not self._aside:
                changed |= await self._summarise(self._request)
            if self._reads_ahead and not self.cancelled and (self._request is None or self._aside or self.written):
                typed = self._draft() if self._draft is not None else ""
                await self._read_ahead(typed)
                if self._writes_ahead and one_line(typed) and not self.cancelled and game.tree.head == self._head:
                    await self._write_ahead(typed)
            if self._aside and not self.cancelled and game.tree.head == self._head:
                # Due as the window is now: reading ahead may have made room, evicting more lines.
                request = game.summary_due(aside=True)
                if request is not None:
                    changed |= await self._summarise(request)
                if request is not None and request.params.aside and self._refused and not self.cancelled:
                    # No room aside after all (the window moved): the usual way, at the story's end.
                    request = game.summary_due()
                    changed |= request is not None and await self._summarise(request)
        except UserFacingError as error:
            what = "no summary this time, the lines stay in the prompt" if self._request else "nothing read ahead"
            log.warning("%s: %s", what, error.message)
        finally:
            self.seconds = time.perf_counter() - started
        return changed

    async def _summarise(self, request: SummaryRequest) -> bool:
        """Write the summary `request` asks for: kept at once (True), or, written aside, left
        waiting for the next idle time; nothing when cancelled, failed or empty."""
        started = time.perf_counter()
        self._displacing = not request.params.aside
        self._summary_begun = True
        if self._on_summary is not None:
            self._on_summary()
        try:
            written = await self._generate(request.prompt, request.params)
        finally:
            self._displacing = False
            self.summary_seconds += time.perf_counter() - started
        summary = " ".join(written.text.split()) if written is not None else ""
        if self.cancelled or not summary or self._game.tree.head != self._head:
            return False
        self.written = True
        if request.params.aside:
            self._game.summary_waits(request, summary)
            return False
        self._game.keep_summary(request, summary)
        return True

    async def _read_ahead(self, typed: str) -> None:
        game = self._game
        budgets = game.budgets  # room for the turn to come: any shift it needs happens now
        params = replace(READ_ONLY, room=budgets.directions + budgets.line)
        for _pass in range(2):  # a second pass where making room changed what the turn reads
            window = game.window_start
            await game.session.tokens_ahead(lambda: game.read_ahead_prompt(typed))  # a server's, off the loop
            prompt = game.read_ahead_prompt(typed)
            if unread(game.session.kv_tokens, prompt) < READ_AHEAD_MIN:
                return
            read = await self._generate(prompt, params)
            if read is None or game.tree.head != self._head:
                return
            self.read_tokens += read.evaluated_tokens
            game.read_ahead_window(read.first_turn)
            if game.window_start == window:
                return
            # Lines left the window: their lore notes may come back, a reminder may be due again.

    async def _write_ahead(self, typed: str) -> None:
        """The first steps of the turn the line `typed` would bring, written into the game's
        `written_ahead` (steps written for it before are found there, not written again)."""
        game = self._game
        stage_prompt = game.read_ahead_prompt(typed)
        if game.written_ahead.finished(stage_prompt, game.session.kv_tokens):
            return
        # Steps written before for the same line are found, not written again (written_ahead.py).
        self._turn = Turn(game.looking_ahead(typed), game.sampling.seed, ahead_only=True)
        await self._turn.finish()
        head = self._turn.head
        if not self.cancelled and head is not None and head.stop_reason != "cancelled":
            read = self._turn.text_prompt is not None  # and read to its end: the KV as it is now
            game.written_ahead.finish(stage_prompt, game.session.kv_tokens if read else None)

    async def _generate(self, prompt: Prompt | list[int], params: GenerationParams) -> GenerationResult | None:
        """A generation run to its end (None when it was cancelled)."""
        if self.cancelled:
            return None
        self._generation = generation = self._game.session.generate(prompt, params)
        async for _piece in generation:
            pass
        result = await generation.result()
        self._refused = result.stop_reason == "context_full" and not result.generated_tokens
        return None if result.stop_reason == "cancelled" else result
