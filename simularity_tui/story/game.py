"""A game in play: the story tree, the stage, lore, memory and achievements, driving the engine.

Everything a player can do is a method here (say a line, let the story go on, regenerate, switch
variants, undo and redo, edit a line, change the scene, choose who may speak), and each line the
model writes is a `Turn` to stream. The TUI, `simularity run` and the benchmarks all play through
this class; it knows nothing of the screen.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace

from ..engine import GenerationParams, GenerationResult, GenerationStream, ModelSession, Prompt, SamplingParams
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.macros import expand
from ..scenario.schema import NARRATOR, Pack
from ..scenario.watch import watch_pack
from ..text_rules import one_line
from .achievements import newly_unlocked
from .lore import triggered
from .stage import Stage, StageCommand, stage_line
from .tree import Line, LineKind, StoryTree
from .writing import (
    STAGE_OPEN,
    directions_grammar,
    later_clock,
    line_grammar,
    line_text,
    next_minute,
    note_text,
    parse_directions,
    parse_line_head,
    preamble,
)

KV_SAVE_EVERY = 10  # lines between KV state files (and at every named save and on quitting)
# The prompt's budget: what a pack may take of the context, so that the story always has room.
PINNED_SHARE = 0.5  # the pinned block (the world, the cast, what is always known, the summary)
NOTES_SHARE = 0.2  # the lore notes one line brings in

log = logging.getLogger("simularity")


@dataclass(frozen=True)
class Budgets:
    directions: int = 24  # tokens for a line's stage commands
    line: int = 160  # tokens for the line itself
    summary: int = 120


class Turn:
    """A line being written by the model: iterate it for the text as it streams."""

    def __init__(self, game: Game, seed: int | None, *, restore_head: int | None = None) -> None:
        self._game = game
        self._seed = seed
        self._restore_head = restore_head  # a regenerated line to show again if no new one is written
        self._unlocked_before = set(game.unlocked)
        self._generation: GenerationStream | None = None
        self.cancelled = False
        self.speaker: str | None = None
        self.text = ""
        self.directions: list[StageCommand] = []
        self.node_id: int | None = None  # the committed line, if any
        self.result: GenerationResult | None = None  # the line's generation
        self.evaluated_tokens = 0  # prompt tokens the engine read for this turn (both steps)
        self.unlocked: list[str] = []  # achievements unlocked by this turn (the player's line included)
        self.summary_written = False
        self.started = time.perf_counter()
        self.first_text_at: float | None = None
        self.phase = "stage"  # stage (its commands), line, then perhaps summary

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
        return self._game._write(self)

    async def finish(self) -> Turn:
        """Run to the end without streaming."""
        async for _piece in self:
            pass
        return self


class Game:
    def __init__(
        self,
        session: ModelSession,
        loaded: LoadedPack,
        episode: str,
        *,
        sampling: SamplingParams | None = None,
        budgets: Budgets | None = None,
        tree: StoryTree | None = None,
        unlocked: dict[str, int] | None = None,
        silent: set[str] | None = None,
        player_name: str | None = None,
        on_commit: Callable[[Game], None] | None = None,
    ) -> None:
        if episode not in loaded.pack.episodes:
            raise UserFacingError(
                f"{loaded.root / 'scenario.toml'}: no episode '{episode}'",
                hint=f"Episodes of this pack: {', '.join(loaded.pack.episodes)}",
            )
        self.session = session
        self.player_name = player_name  # the name the player chose, in place of the pack's
        self.loaded = self._named(loaded)
        self.episode = episode
        self.sampling = sampling or SamplingParams()
        self.budgets = budgets or Budgets()
        self.unlocked: dict[str, int] = dict(unlocked or {})  # achievement id -> lines when it unlocked
        self.silent: set[str] = set(silent or ())  # characters the player has told not to speak
        self.on_commit = on_commit  # called after each change to the story (autosave)
        self._bos = [session.bos_token] if session.bos_token is not None else []
        self._pinned: tuple[str | None, list[int]] | None = None
        self._window_start = 0
        self.tree = tree if tree is not None else self._opening()

    @property
    def pack(self) -> Pack:
        return self.loaded.pack

    # -- the story as it stands -----------------------------------------------------------------

    @property
    def lines(self) -> list[Line]:
        return self.tree.lines()

    @property
    def stage(self) -> Stage:
        return self._stage_after(self.lines)

    def _stage_after(self, lines: list[Line]) -> Stage:
        stage = Stage.opening(self.pack, self.episode)
        for line in lines:
            for command in line.directions:
                if stage.is_legal(self.pack, command):  # a pack edited since may have dropped a scene
                    stage = stage.apply(self.pack, command)
        return stage

    @property
    def clock(self) -> str:
        lines = self.lines
        return lines[-1].clock if lines else self.pack.episodes[self.episode].time

    @property
    def summary(self) -> str | None:
        found = self.tree.summary_at()
        return found[1] if found else None

    def speakers(self, stage: Stage | None = None) -> list[str]:
        """Who may speak next: characters on stage the player has not silenced, and the narrator."""
        stage = stage or self.stage
        cast = [c for c in stage.cast if c in self.pack.characters and not self.pack.characters[c].player]
        return [c for c in cast if c not in self.silent] + [NARRATOR]

    @property
    def covered(self) -> int:
        """How many lines, from the start, the summary in the pinned block stands for."""
        found = self.tree.summary_at()
        return found[0] if found else 0

    def prompt(self, open_turn: list[int]) -> Prompt:
        """The pinned block (with the summary), then every line the summary does not cover."""
        summary = self.summary
        if self._pinned is None or self._pinned[0] != summary:
            pinned = self._fitted(lambda scale: preamble(self.pack, self.episode, summary, scale=scale), PINNED_SHARE)
            self._pinned = (summary, self._bos + pinned)
        lines = self.lines[self.covered :]
        return Prompt.of(self._pinned[1], [*(line.tokens for line in lines), open_turn])

    def _fitted(self, render: Callable[[float], str], share: float) -> list[int]:
        """The tokens of `render(1.0)`, or, past `share` of the context, of the texts shortened to fit.

        The prompt budget decides what of a pack reaches the model, not the pack's validator: a card
        may carry a 40,000-character description, and the story still needs most of the context."""
        limit = int(self.session.n_ctx * share)
        scale = 1.0
        tokens = self.session.tokenize(render(scale))
        for _attempt in range(4):
            if len(tokens) <= limit:
                break
            scale *= 0.95 * limit / len(tokens)
            tokens = self.session.tokenize(render(scale))
        if scale < 1.0:
            log.warning("%s: texts cut to %.0f%% to fit %d tokens of the context", self.pack.id, 100 * scale, limit)
        return tokens

    # -- what the player does -------------------------------------------------------------------

    def say(self, text: str) -> Turn:
        """The player's line, then a line in reply."""
        text = one_line(text)
        turn = self.continue_story()
        if text:
            self._commit(self._line(self.pack.player_id, text, "player", clock=self.clock))
        return turn

    def continue_story(self, seed: int | None = None) -> Turn:
        """Let the model write the next line."""
        return Turn(self, seed if seed is not None else self.sampling.seed)

    def regenerate(self) -> Turn:
        """A new variant of the last line, with a fresh seed (the old one stays a variant)."""
        head = self.tree.nodes[self.tree.head].line
        if head is not None and head.kind == "model":
            restore = self.tree.head
            self.tree.undo()
            return Turn(self, None, restore_head=restore)
        return Turn(self, None)

    def undo(self) -> bool:
        moved = self.tree.undo()
        self._changed()
        return moved

    def redo(self) -> bool:
        moved = self.tree.redo()
        self._changed()
        return moved

    def switch_variant(self, step: int) -> tuple[int, int]:
        """Show the previous/next variant of the last line; returns (index, count)."""
        if self.tree.head:
            self.tree.switch_variant(self.tree.head, step)
            self._changed()
        return self.variants()

    def variants(self) -> tuple[int, int]:
        return self.tree.variants(self.tree.head) if self.tree.head else (0, 1)

    def edit(self, text: str, node_id: int | None = None) -> None:
        """Rewrite a line (the last by default); the engine reads again only from there."""
        node_id = node_id or self.tree.head
        line = self.tree.nodes[node_id].line
        if line is None or not one_line(text):
            return
        edited = replace(line, text=one_line(text))
        self.tree.edit(node_id, replace(edited, tokens=self._tokens(edited)))
        self._changed()

    def set_scene(self, scene_id: str) -> list[str]:
        """Move the story to another scene, as a line of narration; returns achievements it unlocked."""
        command = StageCommand("set_scene", scene_id)
        if not self.stage.is_legal(self.pack, command):
            raise UserFacingError(
                f"No scene '{scene_id}' to move to (or the story is already there).",
                hint=f"Scenes: {', '.join(self.pack.scenes)}",
            )
        before = set(self.unlocked)
        text = f"({self.pack.scenes[scene_id].name})"
        self._commit(self._line(NARRATOR, text, "narration", clock=self.clock, directions=(command,)))
        return [achievement for achievement in self.unlocked if achievement not in before]

    def toggle_speaker(self, character_id: str) -> bool:
        """Let a character speak, or stop them; returns whether they may speak now."""
        if character_id in self.silent:
            self.silent.discard(character_id)
        else:
            self.silent.add(character_id)
        self._changed()
        return character_id not in self.silent

    def apply_pack(self, loaded: LoadedPack) -> None:
        """Play on with a changed pack (hot reload); the engine re-reads from the first change."""
        self.loaded = self._named(loaded)
        self._pinned = None

    def _named(self, loaded: LoadedPack) -> LoadedPack:
        """The pack, its player character renamed as the player chose."""
        pack = loaded.pack
        players = [cid for cid, character in pack.characters.items() if character.player]
        if not self.player_name or not players:
            return loaded
        player = pack.characters[players[0]].model_copy(update={"name": self.player_name})
        renamed = pack.model_copy(update={"characters": {**pack.characters, players[0]: player}})
        return replace(loaded, pack=renamed)

    async def follow_pack_changes(self) -> AsyncIterator[LoadedPack | UserFacingError]:
        """Watch the pack's files; apply each valid save, and pass on what happened (the problems
        of an invalid save leave the last good pack in play)."""
        async for change in watch_pack(self.loaded.root):
            if isinstance(change, LoadedPack) and self.episode not in change.pack.episodes:
                change = UserFacingError(
                    f"{change.root / 'scenario.toml'}: the episode in play, '{self.episode}', is no longer in the pack",
                    hint="Put it back to go on with this pack's changes; this game plays the last good version.",
                )
            elif isinstance(change, LoadedPack):
                self.apply_pack(change)
            yield change

    # -- lines ----------------------------------------------------------------------------------

    def _opening(self) -> StoryTree:
        self.tree = StoryTree()
        clock = self.pack.episodes[self.episode].time
        stage = Stage.opening(self.pack, self.episode)
        for number, scripted in enumerate(self.pack.episodes[self.episode].lines):
            commands = []
            for direction in scripted.directions:
                command = StageCommand.from_direction(direction)
                if stage.is_legal(self.pack, command):
                    stage = stage.apply(self.pack, command)
                    commands.append(command)
            text = expand(scripted.text, user=self.pack.player.name, char=self.pack.speaker_name(scripted.speaker))
            line = self._line(
                scripted.speaker, text, "scripted", clock=next_minute(clock, number), directions=tuple(commands)
            )
            self.tree.add(line)
        return self.tree

    def _line(
        self, speaker: str, text: str, kind: LineKind, *, clock: str, directions: tuple[StageCommand, ...] = ()
    ) -> Line:
        line = Line(speaker=speaker, text=text, clock=clock, kind=kind, tokens=(), directions=directions)
        return replace(line, tokens=self._tokens(line))

    def _tokens(self, line: Line) -> tuple[int, ...]:
        as_model_line = line.speaker != self.pack.player_id
        return tuple(self.session.tokenize(line_text(self.pack, line, stage=as_model_line)))

    def retokenize(self, node_ids: Iterable[int] | None = None) -> None:
        """Tokenize lines again from their text: every line (a save from another model), or those of
        `node_ids` (a save whose tokens for them were damaged; the others keep what the model read)."""
        for node_id in self.tree.nodes if node_ids is None else node_ids:
            node = self.tree.nodes[node_id]
            if node.line is not None:
                node.line = replace(node.line, tokens=self._tokens(node.line))

    def _commit(self, line: Line) -> int:
        """Add a line after the head, unlock what it earns, and save."""
        node = self.tree.add(line)
        self._unlock()
        self._changed()
        return node.id

    def _changed(self) -> None:
        if self.on_commit is not None:
            self.on_commit(self)

    # -- writing a line -------------------------------------------------------------------------

    async def _write(self, turn: Turn) -> AsyncIterator[str]:
        """The turn's text as it streams. A turn that fails (a model server gone, say) commits
        nothing and leaves the story as it was, a regenerated line shown again: trying again works."""
        try:
            async with contextlib.aclosing(self._write_steps(turn)) as pieces:
                async for piece in pieces:
                    yield piece
        except BaseException:
            if turn.node_id is None:
                self._nothing_written(turn)
            raise

    async def _write_steps(self, turn: Turn) -> AsyncGenerator[str, None]:
        pack, stage, lines = self.pack, self.stage, self.lines
        present = {lid for line in lines[self._window_start :] for lid in line.notes}
        notes = tuple(triggered(pack, [line.text for line in lines], present))
        notes_tokens = self._fitted(lambda scale: note_text(pack, notes, scale=scale), NOTES_SHARE) if notes else []
        stage_open = self.session.tokenize(STAGE_OPEN)

        # 1. The stage commands, from those legal now, on their own budget.
        grammar, table = directions_grammar(pack, stage)
        params = GenerationParams(
            sampling=self._sampling(turn), max_tokens=self.budgets.directions, grammar=grammar, heal=False
        )
        turn._generation = self.session.generate(self.prompt(notes_tokens + stage_open), params)
        written = "".join([piece async for piece in turn._generation])
        directed = await turn._generation.result()
        turn.evaluated_tokens += directed.evaluated_tokens
        if turn.cancelled or directed.stop_reason == "cancelled":
            self._nothing_written(turn)
            return
        turn.directions, whole = parse_directions(pack, stage, written, table)
        if whole:
            stage_tokens = stage_open + list(directed.tokens)
        else:  # cut short, or a command no longer legal: write the stage line as it was applied
            stage_tokens = self.session.tokenize(stage_line(pack, turn.directions))
        for command in turn.directions:
            stage = stage.apply(pack, command)

        # 2. The line, by someone who may speak, on its own budget.
        turn.phase = "line"
        speakers = self.speakers(stage)
        open_turn = notes_tokens + stage_tokens
        params = GenerationParams(
            sampling=self._sampling(turn),
            max_tokens=self.budgets.line,
            grammar=line_grammar(pack, speakers, self.clock),
            heal=False,
        )
        turn._generation = self.session.generate(self.prompt(open_turn), params)
        written, clock, head_text, ended = "", self.clock, "", False
        async for piece in turn._generation:
            if ended:  # past the line's end: only a server that ignored the grammar writes on
                turn._generation.cancel()
                continue
            if turn.speaker is None:
                written += piece
                head = parse_line_head(pack, written, speakers)
                if head is None:
                    ended = "\n" in written  # a line without its head: nothing to keep
                    continue
                turn.speaker, clock, piece = head
                head_text = written[: len(written) - len(piece)]
            piece, newline, _rest = piece.partition("\n")  # one line per turn
            ended = bool(newline)
            if piece:
                turn.first_text_at = turn.first_text_at or time.perf_counter()
                turn.text += piece
                yield piece
        turn.result = await turn._generation.result()
        turn.evaluated_tokens += turn.result.evaluated_tokens
        if turn.speaker is None or not turn.text.strip():
            self._nothing_written(turn)  # stopped before anyone said anything: nothing to keep
            return
        line_tokens = list(turn.result.tokens)
        if not turn.result.text.endswith("\n"):  # cut short (stopped, or out of tokens): close the line
            line_tokens += self.session.tokenize("\n")
        kept_head = f"{pack.speaker_name(turn.speaker)} ({clock}): "
        if (
            turn.result.tail_text  # text no token covers: a cancelled reply a server could not tokenize
            or head_text != kept_head
            or turn.result.text not in (head_text + turn.text, head_text + turn.text + "\n")
        ):
            # Not the one line the grammar allows (a server that ignores grammars wrote on, or named
            # someone who may not speak), or no tokens for it: the model reads the line as it is kept.
            line_tokens = self.session.tokenize(f"{kept_head}{turn.text.strip()}\n")
        line = Line(
            speaker=turn.speaker,
            text=turn.text.strip(),
            clock=later_clock(self.clock, clock),
            kind="model",
            tokens=tuple(open_turn + line_tokens),
            directions=tuple(turn.directions),
            notes=notes,
            seed=turn.result.seed,
        )
        self._window_start = self.covered + turn.result.first_turn  # as an index into all the lines
        turn.node_id = self._commit(line)  # saved before anything else can go wrong
        turn.unlocked = [achievement for achievement in self.unlocked if achievement not in turn._unlocked_before]
        turn.summary_written = await self._remember(turn)
        if turn.summary_written:
            self._changed()

    def _nothing_written(self, turn: Turn) -> None:
        """A turn that wrote no line: a regenerated line shows again, as before."""
        if turn._restore_head is not None:
            self.tree.head = turn._restore_head
            self._changed()

    def _sampling(self, turn: Turn) -> SamplingParams:
        return replace(self.sampling, seed=turn._seed)

    def _unlock(self) -> None:
        lines = self.lines
        for achievement in newly_unlocked(self.pack, self.stage, lines, self.unlocked):
            self.unlocked[achievement] = len(lines)

    # -- memory ---------------------------------------------------------------------------------

    async def _remember(self, turn: Turn) -> bool:
        """Summarise evicted lines if due (`_summarise`), at best: the line is committed already, so a
        summary that fails (a model server gone, say) is logged and the lines stay in the prompt, as
        when a summary comes back empty; the next line tries again."""
        try:
            return await self._summarise(turn)
        except UserFacingError as error:
            log.warning("no summary this time, the lines stay in the prompt: %s", error.message)
            return False

    async def _summarise(self, turn: Turn) -> bool:
        """When the engine has evicted lines no summary covers yet, summarise them into the pinned
        block (any language) and leave them out of the prompt from then on. It costs a summary and
        one re-read of the window (the summary was written on the same context), paid once per
        eviction, which the engine makes rare."""
        evicted = self._window_start
        covered, previous = self.tree.summary_at() or (0, None)
        if evicted <= covered or turn.cancelled:
            return False
        # Newest events first, as many as leave room in the context for the request and its answer.
        room = self.session.n_ctx - self.budgets.summary - 200 - len(self.session.tokenize(previous or ""))
        kept: list[str] = []
        for line in reversed(self.lines[covered:evicted]):
            event = f"{self.pack.speaker_name(line.speaker)}: {line.text}"
            room -= len(self.session.tokenize(event)) + 1
            if room < 0:
                break
            kept.insert(0, event)
        events = "\n".join(kept)
        request = (
            f"{self.pack.name}\n\nSummary of the story so far: {previous or '(the story has just begun)'}\n\n"
            f"What happened next:\n{events}\n\n"
            "A new summary of the whole story so far, in one short paragraph, in the language of the story:\n"
        )
        params = GenerationParams(
            sampling=SamplingParams(temperature=0.0, repeat_penalty=1.15),
            max_tokens=self.budgets.summary,
            stop=("\n\n",),
            heal=False,
        )
        turn.phase = "summary"
        turn._generation = self.session.generate(self._bos + self.session.tokenize(request), params)
        async for _piece in turn._generation:
            pass
        result = await turn._generation.result()
        summary = " ".join(result.text.split())
        if result.stop_reason == "cancelled" or not summary:
            return False  # nothing to stand for those lines yet: they stay in the prompt; the next line tries again
        self.tree.nodes[self.tree.head].summary = (evicted, summary)
        return True
