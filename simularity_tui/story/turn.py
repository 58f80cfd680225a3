"""A line being written by the model: the turn drives its steps, each a generation of its own.

1. The stage commands, chosen among those legal now, under their grammar and budget; the lore
   notes the recent lines brought in come first, then the reminders due (reminders.py).
2. The line's head, `Mira (21:40):`: someone who may speak, at a time that does not run back.
3. The line's text, streamed as it is written; the line is committed to the story.

The first two are choices the model makes before any text shows: idle time writes them ahead for
the line the player is typing (written_ahead.py), and reads the third step's prompt to its end;
the turn finds them written, and draws its first text without reading anything.

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
from .writing import (
    STAGE_OPEN,
    TEXT_GRAMMAR,
    LineReader,
    directions_grammar,
    head_grammar,
    later_clock,
    parse_directions,
)
from .written_ahead import WrittenStep

if TYPE_CHECKING:
    from .game import Game

Phase = Literal["stage", "line"]

log = logging.getLogger("simularity")
# A generation that reads its prompt to its end and writes nothing (idle time's reading ahead).
READ_ONLY = GenerationParams(sampling=SamplingParams(temperature=0.0), max_tokens=0, heal=False)


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
    """Iterate a turn for the line's text as it streams; `finish()` runs it without streaming.

    With `ahead_only`, on a copy of the game with the player's typed line said (`Game.looking_ahead`),
    the turn writes its first two steps into the game's `written_ahead` and stops (idle_work.py)."""

    def __init__(
        self, game: Game, seed: int | None, *, restore_head: int | None = None, ahead_only: bool = False
    ) -> None:
        self._game = game
        self._seed = seed
        self._restore_head = restore_head  # a regenerated line to show again if no new one is written
        self._ahead_only = ahead_only
        # Steps written ahead: taken as the turn begins (each serves one turn), or written into.
        self._written = game.written_ahead if ahead_only else game.take_written_ahead()
        self._unlocked_before = set(game.unlocked)
        self._generation: GenerationStream | None = None  # the step's generation, while it runs
        self.cancelled = False
        self.speaker: str | None = None
        self.text = ""
        self.directions: list[StageCommand] = []
        self.node_id: int | None = None  # the committed line, if any
        self.head: GenerationResult | None = None  # the line head's generation
        self.result: GenerationResult | None = None  # the line text's generation
        self._streamed_step: tuple[str, GenerationResult] | None = None  # the last line step's (_streamed)
        self.text_prompt: Prompt | None = None  # the text step's prompt, once a whole head is written
        self.evaluated_tokens = 0  # prompt tokens the engine read for this turn (any step)
        self.shifted_tokens = 0  # tokens the engine shifted out of the KV for this turn (any step may)
        self.steps_written_ahead = 0  # steps found written in idle time (0 to 2)
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
        # On a server, texts new to it are tokenized off the event loop first (on a copy: the real
        # run below changes the game's lore log); in-process this costs nothing.
        await game.session.tokens_ahead(lambda: Opening.of(game.looking_ahead()))
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
        async with contextlib.aclosing(self._head_step(game.prompt(open_turn), reader)) as pieces:
            async for piece in pieces:
                yield piece  # only a server that ignores the grammar writes text with the head
        head = self.head
        if head is None:
            self._nothing_written()
            return
        room = game.budgets.line - len(head.tokens)
        whole = not reader.ended and head.stop_reason in ("eos", "stop") and room > 0  # a whole head
        text_prompt = self.text_prompt = game.prompt(open_turn + list(head.tokens)) if whole else None
        if self._ahead_only:
            if text_prompt is not None:
                await self._read_text_prompt(text_prompt, room)
            self._nothing_written()
            return
        if text_prompt is not None:
            async with contextlib.aclosing(self._text_step(text_prompt, reader, room)) as pieces:
                async for piece in pieces:
                    yield piece
        if self.speaker is None or not self.text.strip():
            self._nothing_written()  # stopped before anyone said anything: nothing to keep
            return
        # The story keeps the stage line in its usual tokens, however the model split it (" " "neut"
        # "ral" for " neutral"): read back, an odd split is copied line after line, and every piece
        # of it costs a draw. Where they differ, idle time reads the stage line and the line after
        # it again (idle_work.py).
        await game.session.tokens_ahead(
            lambda: self._line(opening.tokens + game.session.tokenize(stage_line(pack, self.directions)), notes, reader)
        )
        kept_stage = game.session.tokenize(stage_line(pack, self.directions))
        line = replace(self._line(opening.tokens + kept_stage, notes, reader), reminders=reminders)
        last = self.result or head
        self.node_id = game.add_written_line(line, first_turn=last.first_turn)
        self.unlocked = [achievement for achievement in game.unlocked if achievement not in self._unlocked_before]

    async def _stage_step(self, pack: Pack, opening: Opening) -> tuple[Stage, list[int]] | None:
        """The stage commands, from those legal now, on their own budget, after the line's notes and
        reminders (`opening`): the stage after them and the stage line's tokens as the model reads
        them; None when the turn was cancelled."""
        game = self._game
        stage = game.stage
        grammar, table = directions_grammar(pack, stage)
        params = self._params(game.budgets.directions, grammar)
        directed = await self._run(opening.stage_prompt(game), params)
        if directed is None:
            return None
        written, directed_result = directed
        self.directions, whole = parse_directions(pack, stage, written, table)
        if whole:
            stage_tokens = opening.stage_open + list(directed_result.tokens)
        else:  # cut short, or a command no longer legal: write the stage line as it was applied
            text = stage_line(pack, self.directions)
            await game.session.tokens_ahead(lambda: game.session.tokenize(text))
            stage_tokens = game.session.tokenize(text)
        for command in self.directions:
            stage = stage.apply(pack, command)
        return stage, stage_tokens

    async def _head_step(self, prompt: Prompt, reader: LineReader) -> AsyncGenerator[str, None]:
        """Who speaks and when, `Mira (21:40):`, on the line's budget: `self.head` (None when
        cancelled before anyone spoke). Only a server that ignores the grammar writes text here."""
        game = self._game
        params = self._params(game.budgets.line, head_grammar(reader.pack, reader.speakers, game.clock))
        if (step := self._written_ahead(prompt, params)) is not None:
            self.head = step.result
            if text := reader.feed(step.text):
                yield self._shown(text, reader)
            return
        async with contextlib.aclosing(self._streamed(prompt, params, reader)) as pieces:
            async for piece in pieces:
                yield piece
        if self._streamed_step is None:
            return
        written, self.head = self._streamed_step
        if reader.speaker is None and self.head.stop_reason == "cancelled":
            self.head = None  # no one spoke yet
        else:
            self._keep(prompt, params, written, self.head)

    async def _text_step(self, prompt: Prompt, reader: LineReader, room: int) -> AsyncGenerator[str, None]:
        """The line's text after its head, on the `room` the head left of the line's budget,
        streamed as it is written: `self.result`."""
        params = self._params(room, TEXT_GRAMMAR)
        async with contextlib.aclosing(self._streamed(prompt, params, reader)) as pieces:
            async for piece in pieces:
                yield piece
        self.result = self._streamed_step[1] if self._streamed_step is not None else None

    async def _read_text_prompt(self, prompt: Prompt, room: int) -> None:
        """Writing ahead: the text step's prompt read to its end (the head's last tokens, forced
        by its grammar, are read only with the next prompt), so that at the player's send the line's
        first text is drawn without reading anything."""
        if self.cancelled:
            return
        self._generation = generation = self._game.session.generate(prompt, replace(READ_ONLY, room=room))
        async for _piece in generation:
            pass
        await generation.result()

    async def _streamed(
        self, prompt: Prompt, params: GenerationParams, reader: LineReader
    ) -> AsyncGenerator[str, None]:
        """A step of the line, read by `reader` as it streams: its text shown, its whole text and
        result left in `_streamed_step` (None when the turn was cancelled before it began)."""
        self._streamed_step = None
        if self.cancelled:
            return
        begun = time.perf_counter()
        self._generation = generation = self._game.session.generate(prompt, params)
        written = ""
        async for piece in generation:
            written += piece
            if reader.ended:  # past the line's end: only a server that ignored the grammar writes on
                generation.cancel()
                continue
            if text := reader.feed(piece):
                yield self._shown(text, reader)
        result = await generation.result()
        self.evaluated_tokens += result.evaluated_tokens
        self.shifted_tokens += result.shifted_tokens
        if result.stop_reason != "cancelled" or reader.speaker is not None:
            self.first_token_at = self.first_token_at or begun + result.first_token_s
        self._streamed_step = (written, result)

    def _shown(self, text: str, reader: LineReader) -> str:
        """`text` of the line, as it is shown."""
        self.speaker = reader.speaker
        self.first_text_at = self.first_text_at or time.perf_counter()
        self.text += text
        return text

    def _line(self, open_turn: list[int], notes: tuple[str, ...], reader: LineReader) -> Line:
        """The line as the story keeps it, with the tokens the model reads for it."""
        assert self.head is not None and self.speaker is not None
        last = self.result or self.head
        return Line(
            speaker=self.speaker,
            text=self.text.strip(),
            clock=later_clock(self._game.clock, reader.clock),
            kind="model",
            tokens=tuple(open_turn + self._line_tokens(self.head, self.result, reader)),
            directions=tuple(self.directions),
            notes=notes,
            seed=last.seed,
        )

    def _line_tokens(self, head: GenerationResult, text: GenerationResult | None, reader: LineReader) -> list[int]:
        """What the model wrote, closed by a newline; or, where that is not the line as kept, the
        kept line tokenized."""
        session = self._game.session
        written = head.text + (text.text if text is not None else "")
        tokens = list(head.tokens) + list(text.tokens if text is not None else ())
        if not written.endswith("\n"):  # cut short (stopped, or out of tokens): close the line
            tokens += session.tokenize("\n")
        kept_head = reader.kept_head()
        said = reader.head + self.text
        cut = head.tail_text or (text is not None and text.tail_text)
        if cut or reader.head != kept_head or written not in (said, said + "\n"):
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

    async def _run(self, prompt: Prompt, params: GenerationParams) -> tuple[str, GenerationResult] | None:
        """The stage step's generation run to its end, its text and its result; or found written
        ahead. None when the turn was cancelled."""
        if (step := self._written_ahead(prompt, params)) is not None:
            return step.text, step.result
        if self.cancelled:
            return None
        session = self._game.session
        begun = time.perf_counter()
        self._generation = generation = session.generate(prompt, params)
        written = "".join([piece async for piece in generation])
        result = await generation.result()
        self.evaluated_tokens += result.evaluated_tokens
        self.shifted_tokens += result.shifted_tokens
        if self.cancelled or result.stop_reason == "cancelled":
            return None
        self.first_token_at = self.first_token_at or begun + result.first_token_s
        self._keep(prompt, params, written, result)
        return written, result

    def _written_ahead(self, prompt: Prompt, params: GenerationParams) -> WrittenStep | None:
        """The step written for exactly this generation in idle time, if any (writing ahead, one
        written before for the same line); none once the turn is cancelled."""
        if self.cancelled:
            return None
        step = self._written.find(self._game.session, prompt, params)
        if not self._ahead_only:
            self.steps_written_ahead += step is not None
        return step

    def _keep(self, prompt: Prompt, params: GenerationParams, written: str, result: GenerationResult) -> None:
        """Writing ahead: keep a step written to its end for the turn that will ask for it."""
        if self._ahead_only and not self.cancelled and result.stop_reason != "cancelled":
            self._written.keep(WrittenStep(self._game.session, prompt, params, written, result))

    def _nothing_written(self) -> None:
        """No line this turn: a regenerated line shows again, as before."""
        if self._restore_head is not None:
            self._game.restore_head(self._restore_head)
