"""A line being written by the model: the turn drives its steps, each a generation of its own.

1. The stage commands, chosen among those legal now, under their grammar and budget; the lore
   notes the recent lines brought in come first, then the reminders due (reminders.py).
2. The line, by someone who may speak, streamed as it is written; committed to the story.

The game holds the story and offers each step what it needs (the prompt, the stage, who may speak,
the lore notes) and takes the line back. A turn that writes no line (cancelled
before anyone spoke, or failed: a model server gone) commits nothing, and a regenerated line shows
again: trying again works. The summary of lines the engine evicted is no step of a turn: it is
written in idle time (idle_work.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ..engine import GenerationParams, GenerationResult, GenerationStream, Prompt, SamplingParams
from ..scenario.schema import Pack
from .stage import Stage, StageCommand, stage_line
from .tree import Line
from .writing import STAGE_OPEN, LineReader, directions_grammar, later_clock, line_grammar, parse_directions

if TYPE_CHECKING:
    from .game import Game

Phase = Literal["stage", "line"]

log = logging.getLogger("simularity")


@dataclass(frozen=True)
class Opening:
    """What a turn reads before the model writes anything: the lore notes its line brings in and
    the reminders due (their ids, and their tokens together), then `[stage:`. Reading ahead
    (idle_work.py) reads it for the player's line being typed, so the turn finds it read."""

    notes: tuple[str, ...]
    reminders: tuple[str, ...]
    tokens: list[int]  # the notes', then the reminders'
    stage_open: list[int]

    @classmethod
    def of(cls, game: Game) -> Opening:
        notes, notes_tokens = game.lore_notes()
        reminders, reminder_tokens = game.reminders()  # after the notes, before the stage line
        return cls(notes, reminders, notes_tokens + reminder_tokens, game.session.tokenize(STAGE_OPEN))

    def stage_prompt(self, game: Game) -> Prompt:
        """The stage step's prompt: the story, then this."""
        return game.prompt(self.tokens + self.stage_open)


class Turn:
    """Iterate a turn for the line's text as it streams; `finish()` runs it without streaming."""

    def __init__(self, game: Game, seed: int | None, *, restore_head: int | None = None) -> None:
        self._game = game
        self._seed = seed
        self._restore_head = restore_head  # a regenerated line to show again if no new one is written
        self._unlocked_before = set(game.unlocked)
        self._generation: GenerationStream | None = None  # the step's generation, while it runs
        self.cancelled = False
        self.speaker: str | None = None
        self.text = ""
        self.directions: list[StageCommand] = []
        self.node_id: int | None = None  # the committed line, if any
        self.result: GenerationResult | None = None  # the line's generation
        self.evaluated_tokens = 0  # prompt tokens the engine read for this turn (stage and line)
        self.shifted_tokens = 0  # tokens the engine shifted out of the KV for this turn (either step may)
        self.unlocked: list[str] = []  # achievements unlocked by this turn (the player's line included)
        self.started = time.perf_counter()
        self.first_text_at: float | None = None
        self.first_token_at: float | None = None  # the model's first token of the turn (any step)
        self.phase: Phase = "stage"

    @property
    def reading(self) -> float:
        """How much of the prompt's new part the engine has read, in the current step (0 to 1)."""
        return self._generation.prefill if self._generation is not None else 0.0

    @property
    def time_to_first_text(self) -> float | None:
        return None if self.first_text_at is None else self.first_text_at - self.started

    def cancel(self) -> None:
        self.cancelled = True
        if self._generation is not None:
            self._generation.cancel()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._write()

    async def finish(self) -> Turn:
        """Run to the end without streaming."""
        async for _piece in self:
            pass
        return self

    # -- the steps ------------------------------------------------------------------------------

    async def _write(self) -> AsyncIterator[str]:
        """The line's text as it streams; whatever fails before the line is committed leaves the
        story as it was."""
        try:
            async with contextlib.aclosing(self._steps()) as pieces:
                async for piece in pieces:
                    yield piece
        except BaseException:
            if self.node_id is None:
                self._nothing_written()
            raise

    async def _steps(self) -> AsyncGenerator[str, None]:
        game = self._game
        pack = game.pack  # as the turn begins: a pack changed meanwhile (hot reload) plays from the next turn
        opening = Opening.of(game)
        staged = await self._stage_step(pack, opening)
        if staged is None:
            self._nothing_written()
            return
        stage, stage_tokens = staged
        notes, reminders = opening.notes, opening.reminders
        open_turn = opening.tokens + stage_tokens
        self.phase = "line"
        reader = LineReader(pack, game.speakers(stage), game.clock)
        async with contextlib.aclosing(self._line_step(game.prompt(open_turn), reader)) as pieces:
            async for piece in pieces:
                yield piece
        if self.result is None or self.speaker is None or not self.text.strip():
            self._nothing_written()  # stopped before anyone said anything: nothing to keep
            return
        # The story keeps the stage line in its usual tokens, however the model split it (" " "neut"
        # "ral" for " neutral"): read back, an odd split is copied line after line, and every piece
        # of it costs a draw. Where they differ, idle time reads the stage line and the line after
        # it again (idle_work.py).
        kept_stage = game.session.tokenize(stage_line(pack, self.directions))
        line = replace(self._line(opening.tokens + kept_stage, notes, reader), reminders=reminders)
        self.node_id = game.add_written_line(line, first_turn=self.result.first_turn)
        self.unlocked = [achievement for achievement in game.unlocked if achievement not in self._unlocked_before]

    async def _stage_step(self, pack: Pack, opening: Opening) -> tuple[Stage, list[int]] | None:
        """The stage commands, from those legal now, on their own budget, after the line's notes and
        reminders (`opening`): the stage after them and the stage line's tokens as the model reads
        them; None when the turn was cancelled."""
        game = self._game
        stage = game.stage
        grammar, table = directions_grammar(pack, stage)
        params = self._params(game.budgets.directions, grammar)
        written, directed = await self._run(opening.stage_prompt(game), params)
        self.evaluated_tokens += directed.evaluated_tokens
        self.shifted_tokens += directed.shifted_tokens
        if self.cancelled or directed.stop_reason == "cancelled":
            return None
        self.directions, whole = parse_directions(pack, stage, written, table)
        if whole:
            stage_tokens = opening.stage_open + list(directed.tokens)
        else:  # cut short, or a command no longer legal: write the stage line as it was applied
            stage_tokens = game.session.tokenize(stage_line(pack, self.directions))
        for command in self.directions:
            stage = stage.apply(pack, command)
        return stage, stage_tokens

    async def _line_step(self, prompt: Prompt, reader: LineReader) -> AsyncGenerator[str, None]:
        """The line, by someone who may speak, on its own budget, streamed as it is written."""
        game = self._game
        params = self._params(game.budgets.line, line_grammar(reader.pack, reader.speakers, game.clock))
        begun = time.perf_counter()
        self._generation = generation = game.session.generate(prompt, params)
        async for piece in generation:
            if reader.ended:  # past the line's end: only a server that ignored the grammar writes on
                generation.cancel()
                continue
            text = reader.feed(piece)
            self.speaker = reader.speaker
            if text:
                self.first_text_at = self.first_text_at or time.perf_counter()
                self.text += text
                yield text
        self.result = await generation.result()
        self.first_token_at = self.first_token_at or begun + self.result.first_token_s
        self.evaluated_tokens += self.result.evaluated_tokens
        self.shifted_tokens += self.result.shifted_tokens

    def _line(self, open_turn: list[int], notes: tuple[str, ...], reader: LineReader) -> Line:
        """The line as the story keeps it, with the tokens the model reads for it."""
        assert self.result is not None and self.speaker is not None
        return Line(
            speaker=self.speaker,
            text=self.text.strip(),
            clock=later_clock(self._game.clock, reader.clock),
            kind="model",
            tokens=tuple(open_turn + self._line_tokens(self.result, reader)),
            directions=tuple(self.directions),
            notes=notes,
            seed=self.result.seed,
        )

    def _line_tokens(self, result: GenerationResult, reader: LineReader) -> list[int]:
        """What the model wrote, closed by a newline; or, where that is not the line as kept, the
        kept line tokenized."""
        session = self._game.session
        tokens = list(result.tokens)
        if not result.text.endswith("\n"):  # cut short (stopped, or out of tokens): close the line
            tokens += session.tokenize("\n")
        kept_head = reader.kept_head()
        written = reader.head + self.text
        if result.tail_text or reader.head != kept_head or result.text not in (written, written + "\n"):
            # Not the one line the grammar allows (a server that ignores grammars wrote on, or named
            # someone who may not speak), or no tokens for all of it (a cancelled reply a server
            # could not tokenize): the model reads the line as it is kept.
            tokens = session.tokenize(f"{kept_head}{self.text.strip()}\n")
        return tokens

    # -- helpers --------------------------------------------------------------------------------

    def _params(self, max_tokens: int, grammar: str) -> GenerationParams:
        """A step written under its grammar, with the turn's seed (no healing: the grammar decides
        how the text starts)."""
        sampling: SamplingParams = replace(self._game.sampling, seed=self._seed)
        return GenerationParams(sampling=sampling, max_tokens=max_tokens, grammar=grammar, heal=False)

    async def _run(self, prompt: Prompt | list[int], params: GenerationParams) -> tuple[str, GenerationResult]:
        """A step's generation run to its end: its text and its result."""
        begun = time.perf_counter()
        self._generation = generation = self._game.session.generate(prompt, params)
        written = "".join([piece async for piece in generation])
        result = await generation.result()
        self.first_token_at = self.first_token_at or begun + result.first_token_s
        return written, result

    def _nothing_written(self) -> None:
        """No line this turn: a regenerated line shows again, as before."""
        if self._restore_head is not None:
            self._game.restore_head(self._restore_head)
