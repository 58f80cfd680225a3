"""A line the model finishes from where it stands, rather than one it writes whole (turn.py):

- **extend**: the last line goes on where it stopped (out of tokens, or stopped by the player);
- **lead**: the player begins a character's line ("Mira: The lamp is") and the model finishes it;
- **impersonate**: the model writes the player's own next line, for the player to edit and send.

Both run with token healing on: a line that stops mid-word ("…is Par") goes on as a whole word
("Paris"), as the engine rolls its last tokens back and lets the model write them again. No
grammar runs (healing decides how the text starts); the line ends at its newline or its budget.
The prompt still grows only at its end: an extended line is the last thing the model read, and a
led line is a new line after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..engine import GenerationParams, Prompt
from ..errors import UserFacingError
from ..text_rules import without_controls
from .stage import stage_line
from .tree import Line
from .turn import Turn
from .writing import LineReader, line_grammar, line_head

if TYPE_CHECKING:
    from .game import Game


class Completion(Turn):
    """Iterate it, as a turn, for the new text as it streams. `line` is the line to finish: its
    speaker and clock, its text so far, and (for extend) its node."""

    def __init__(self, game: Game, seed: int | None, *, line: Line, node_id: int | None) -> None:
        super().__init__(game, seed)
        self._line_so_far = line
        self.begun = line.text  # the line as it stood before the model went on
        self._extending = node_id  # the line extended in place; None: a new (led) line
        self.speaker = line.speaker
        self.directions = list(line.directions)
        self.phase = "line"

    @property
    def extending(self) -> bool:
        """Whether the line goes on in place (extend), rather than being a new one (lead)."""
        return self._extending is not None

    async def _steps(self) -> AsyncGenerator[str, None]:
        game, line = self._game, self._line_so_far
        # A server's new texts (the led line, lore notes) tokenized off the event loop first, on a
        # copy of the game (the run that counts follows, and sets the same line so far again).
        await game.session.tokens_ahead(lambda: self._prompt(game.looking_ahead(), line))
        opened, prompt = self._prompt(game, line)
        sampling = replace(game.sampling, seed=self._seed)
        params = GenerationParams(sampling=sampling, max_tokens=game.budgets.line, stop=("\n",), heal=True)
        self._generation = generation = game.session.generate(prompt, params)
        async for piece in generation:
            self.first_text_at = self.first_text_at or time.perf_counter()
            self.text += piece
            yield piece
        self.result = result = await generation.result()
        self.evaluated_tokens, self.shifted_tokens = result.evaluated_tokens, result.shifted_tokens
        if result.stop_reason == "cancelled" and not self.text:
            return
        healed = opened[: len(opened) - result.healed_tokens]
        tokens = (*healed, *result.tokens, *game.session.tokenize("\n"))
        finished = replace(line, text=(line.text + self.text).strip(), tokens=tokens, kind="model", seed=result.seed)
        if self._extending is not None:
            game.replace_line(self._extending, finished)
            self.node_id = self._extending
        else:
            self.node_id = game.add_written_line(finished, first_turn=result.first_turn)
        self.unlocked = [achievement for achievement in game.unlocked if achievement not in self._unlocked_before]

    def _prompt(self, game: Game, line: Line) -> tuple[list[int], Prompt]:
        """The line so far, as its open turn (its newline taken off), and the prompt it ends."""
        if self._extending is not None:
            opened = _without_newline(game, line.tokens)
            before = game.prompt([])
            return opened, Prompt.of(before.pinned, [*before.turns[:-2], opened])
        notes, notes_tokens = game.lore_notes()
        reminders, reminder_tokens = game.reminders()
        self._line_so_far = line = replace(line, notes=notes, reminders=reminders)
        said = stage_line(game.pack, list(line.directions)) + line_head(game.pack, line.speaker, line.clock) + line.text
        opened = notes_tokens + reminder_tokens + game.session.tokenize(said)
        return opened, game.prompt(opened)


def _without_newline(game: Game, tokens: Sequence[int]) -> list[int]:
    """A line's tokens without the newline that closes it (the model goes on from there)."""
    newline = game.session.tokenize("\n")
    ends = len(newline) and list(tokens[-len(newline) :]) == newline
    return list(tokens[: len(tokens) - len(newline)] if ends else tokens)


def led_line(game: Game, lead: str) -> Line:
    """The line a player begins with `NAME: TEXT` for a character who may speak now."""
    name, separator, text = lead.partition(":")
    if not separator or not text.strip():
        raise UserFacingError(f"'{lead}' is not NAME: TEXT", hint="For example: Mira: The lamp is")
    speakers = {game.pack.speaker_name(s).casefold(): s for s in game.speakers()}
    speaker = speakers.get(name.strip().casefold())
    if speaker is None:
        who = ", ".join(game.pack.speaker_name(s) for s in game.speakers())
        raise UserFacingError(f"'{name.strip()}' may not speak now", hint=f"Who may: {who}")
    return Line(speaker=speaker, text=text.strip(), clock=game.clock, kind="model", tokens=())


class Impersonation(Turn):
    """The player's next line, written by the model (SillyTavern's Impersonate): under the line
    grammar, in the player's name, and kept nowhere. The player edits it and sends it, or not;
    `text` holds it as it streams."""

    def __init__(self, game: Game, seed: int | None) -> None:
        super().__init__(game, seed)
        self.speaker = game.pack.player_id
        self.phase = "line"

    async def _steps(self) -> AsyncGenerator[str, None]:
        game = self._game
        reader = LineReader(game.pack, [game.pack.player_id], game.clock)
        sampling = replace(game.sampling, seed=self._seed)
        grammar = line_grammar(game.pack, [game.pack.player_id], game.clock)
        params = GenerationParams(sampling=sampling, max_tokens=game.budgets.line, grammar=grammar, heal=False)
        self._generation = generation = game.session.generate(game.prompt([]), params)
        async for piece in generation:
            if reader.ended:
                generation.cancel()
                continue
            text = without_controls(reader.feed(piece))  # model text, bound for an input (one line: the reader ends it)
            if text:
                self.first_text_at = self.first_text_at or time.perf_counter()
                self.text += text
                yield text
        self.result = await generation.result()
        self.evaluated_tokens, self.shifted_tokens = self.result.evaluated_tokens, self.result.shifted_tokens
        self.text = self.text.strip()
