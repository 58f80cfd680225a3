"""A game in play: the story tree, the stage, lore, memory and achievements, driving the engine.

Everything a player can do is a method here (say a line, let the story go on, regenerate, switch
variants, undo and redo, edit a line, change the scene, choose who may speak), and each line the
model writes is a `Turn` to stream (turn.py), which drives its own steps through the few methods
under "what a turn needs". The TUI, `simularity run` and the benchmarks all play through this
class; it knows nothing of the screen.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

from ..engine import ModelSession, Prompt, SamplingParams
from ..engine.context_window import unread
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.macros import expand
from ..scenario.schema import NARRATOR, LoreEntry, Pack
from ..scenario.watch import watch_pack
from ..text_rules import name_problem, one_line, without_controls
from .achievements import Mentions, newly_unlocked
from .budgets import (
    EXAMPLES_SHARE,
    PINNED_SHARE,
    REMINDER_SHARE,
    SUMMARY_LABEL_TOKENS,
    Budgets,
    fitted_at,
    lore_budget,
)
from .completion import Completion, Impersonation, led_line
from .examples import examples_text
from .framing import framed
from .idle_work import READ_AHEAD_MIN, IdleWork
from .lore import LoreScan, lore_seed, scan_lore
from .path_facts import PathFacts
from .player_lore import laid_over
from .prompt_view import PromptView, build_prompt_view
from .reminders import (
    AUTHORS_NOTE_TAG,
    DIRECTION,
    DIRECTION_TAG,
    Reminder,
    authors_note_id,
    due,
    note_reminders,
    pack_reminders,
)
from .stage import Stage, StageCommand
from .summary import SummaryRequest, summary_request
from .tree import Line, LineKind, StoryTree
from .turn import Opening, Turn
from .writing import clip, has_stage_line, line_text, next_minute, note_text, pinned_parts, preamble, reminder_text
from .written_ahead import WrittenAhead

Act = Literal["say", "do", "story", "ooc"]  # the ways a player acts (Game.act)
ACTS: tuple[Act, ...] = get_args(Act)


MAX_NOTE_CHARS = 4000  # an author's note, the essentials, a summary: a few paragraphs at most


def clean_note(text: str) -> str:
    """A note as the model reads it: no control characters (newlines kept), no blank edges, at most
    MAX_NOTE_CHARS (the prompt shortens it further to its budget; the screens say when they cut)."""
    return without_controls(text).strip()[:MAX_NOTE_CHARS].strip()


@dataclass(frozen=True)
class _Pinned:
    """The pinned block as the model reads it, and what it was rendered from (the inspector renders
    it again, part by part)."""

    summary: str | None
    shown_summary: str | None  # the summary as the block holds it: cut to its room when longer
    essentials: str
    tokens: list[int]
    scale: float  # the pack's texts cut to this share of their length to fit (budgets.py)
    examples: str  # the example lines that fit their budget


@dataclass(frozen=True)
class WaitingSummary:
    """A summary written aside, waiting to join the prompt (`Game.summary_waits`)."""

    request: SummaryRequest
    text: str
    lines: tuple[Line, ...]  # the lines it covers: it is dropped if one of them leaves the story or changes


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
        player_description: str | None = None,
        authors_note: str = "",
        note_texts: Mapping[str, str] | None = None,
        essentials: str = "",
        player_lore: Mapping[str, LoreEntry] | None = None,
        on_commit: Callable[[Game], None] | None = None,
    ) -> None:
        if episode not in loaded.pack.episodes:
            raise UserFacingError(
                f"{loaded.root / 'scenario.toml'}: no episode '{episode}'",
                hint=f"Episodes of this pack: {', '.join(loaded.pack.episodes)}",
            )
        self.session = session
        self.player_name = player_name  # the name the player chose, in place of the pack's
        self.player_description = clean_note(player_description) if player_description else None  # likewise
        self.player_lore: dict[str, LoreEntry] = dict(player_lore or {})  # the player's own entries (player_lore.py)
        self._as_written = loaded  # the pack as its files say, before the player's persona and lore
        self.loaded = self._named(loaded)
        self.episode = episode
        self.sampling = sampling or SamplingParams()
        self.budgets = budgets or Budgets()
        self.unlocked: dict[str, int] = dict(unlocked or {})  # achievement id -> lines when it unlocked
        self.silent: set[str] = set(silent or ())  # characters the player has told not to speak
        # Characters players hold in a shared room (room/): the model never speaks for them. Not saved:
        # the save played solo lets the model play them again.
        self.held: set[str] = set()
        self.essentials = clean_note(essentials)  # the player's plot essentials, in the pinned block
        self.direction = ""  # the player's out-of-story direction for the next line ("": none)
        self.authors_note = clean_note(authors_note)  # the player's note to the model, near the end ("": none)
        self.note_texts = {
            rid: clean_note(text) for rid, text in (note_texts or {}).items()
        }  # id -> every note carried
        if self.authors_note:
            self.note_texts[authors_note_id(self.authors_note)] = self.authors_note
        self.on_commit = on_commit  # called after each change to the story (autosave)
        self._bos = [session.bos_token] if session.bos_token is not None else []
        self._pinned: _Pinned | None = None
        # Bumped by every change that makes the pinned block stale: a block made in a thread meanwhile
        # (ModelSession.tokens_ahead) from the old pack, persona or lore is not kept.
        self._pinned_epoch = 0
        self._window_start = 0
        self.last_lore_scan: LoreScan | None = None  # the lore of the next line, as last worked out
        # The scales the next line's notes and reminders were cut to, to fit their budgets (1.0: whole):
        # the prompt inspector shows them as the model reads them.
        self.notes_scale = 1.0
        self.reminder_scales: dict[str, float] = {}
        self.lore_log: list[LoreScan] = []  # the lore of each line written in this session (the lore debugger)
        # The next turn's first steps, written in idle time for the line being typed (written_ahead.py);
        # a copy from `looking_ahead` writes into the same.
        self.written_ahead = WrittenAhead()
        # A summary written aside in idle time, for the prompt from the next idle time on (idle_work.py).
        self.summary_waiting: WaitingSummary | None = None
        self._mentions: Mentions = {}  # the achievements' word checks, by line text (achievements.py)
        self._path_facts: PathFacts | None = None
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
        return self._facts.stage_after(self.tree.head)

    @property
    def _facts(self) -> PathFacts:
        """What the story's lines amount to (path_facts.py), for this tree, pack and episode."""
        if self._path_facts is None or not self._path_facts.hold_for(self.tree, self.pack, self.episode):
            self._path_facts = PathFacts(self.tree, self.pack, self.episode)
        return self._path_facts

    @property
    def clock(self) -> str:
        lines = self.lines
        return lines[-1].clock if lines else self.pack.episodes[self.episode].time

    @property
    def summary(self) -> str | None:
        found = self.tree.summary_at()
        return found[1] if found else None

    def speakers(self, stage: Stage | None = None) -> list[str]:
        """Who may speak next: characters on stage the player has not silenced and no player holds, and
        the narrator."""
        stage = stage or self.stage
        cast = [c for c in stage.cast if c in self.pack.characters and not self.pack.characters[c].player]
        return [c for c in cast if c not in self.silent and c not in self.held] + [NARRATOR]

    @property
    def covered(self) -> int:
        """How many lines, from the start, the summary in the pinned block stands for."""
        found = self.tree.summary_at()
        return found[0] if found else 0

    def prompt(self, open_turn: list[int]) -> Prompt:
        """The pinned block (with the summary), then every line the summary does not cover."""
        lines = self.lines[self.covered :]
        return Prompt.of(self._pinned_block().tokens, [*(line.tokens for line in lines), open_turn])

    def _pinned_block(self) -> _Pinned:
        summary, essentials, epoch = self.summary, self.essentials, self._pinned_epoch
        if self._pinned is None or (self._pinned.summary, self._pinned.essentials) != (summary, essentials):
            budget = min(self.pack.prompt.example_tokens, int(self.session.n_ctx * EXAMPLES_SHARE))
            examples = examples_text(self.pack, lambda text: len(self.session.tokenize(text)), budget)
            # The pack's texts fit beside room for a summary, whatever the summary says: a new one
            # then changes only the block's tail, which the engine puts in place without reading
            # the lines after it again (engine/kv_cache.py). A longer summary (edited memory) is cut.
            room = min(self.budgets.summary + SUMMARY_LABEL_TOKENS, int(self.session.n_ctx * PINNED_SHARE) // 2)
            _tokens, scale = fitted_at(
                self.session,
                lambda scale: preamble(
                    self.pack, self.episode, None, scale=scale, examples=examples, essentials=essentials
                ),
                PINNED_SHARE - room / self.session.n_ctx,
                pack_id=self.pack.id,
            )
            shown = None
            if summary:
                _summary_tokens, summary_scale = fitted_at(
                    self.session, lambda scale: clip(summary, scale), room / self.session.n_ctx, pack_id=self.pack.id
                )
                shown = clip(summary, summary_scale)
            tokens = self.session.tokenize(
                preamble(self.pack, self.episode, shown, scale=scale, examples=examples, essentials=essentials)
            )
            pinned = self._bos + framed(self.session, tokens)
            made = _Pinned(summary, shown, essentials, pinned, scale, examples)
            if epoch == self._pinned_epoch:
                self._pinned = made
            return made
        return self._pinned

    def _stale_pinned(self) -> None:
        self._pinned, self._pinned_epoch = None, self._pinned_epoch + 1

    def pinned_parts(self) -> list[tuple[str, str]]:
        """The pinned block as labelled parts (writing.pinned_parts), as the model reads it now."""
        pinned = self._pinned_block()
        return pinned_parts(
            self.pack,
            self.episode,
            pinned.shown_summary,
            scale=pinned.scale,
            examples=pinned.examples,
            essentials=pinned.essentials,
        )

    @property
    def window_start(self) -> int:
        """The first line (an index into `lines`) the model still reads: the engine evicted those
        before it, or a summary stands for them."""
        return max(self._window_start, self.covered)

    def prompt_view(self, say: str | None = None) -> PromptView:
        """Exactly what the model would read for the next line, part by part (prompt_view.py): after
        the player says `say`, when given. Nothing is generated, and the game does not change: the
        view is taken on a copy of it, which a thread may do while the game waits for the player."""
        return build_prompt_view(self.looking_ahead(say))

    def looking_ahead(self, say: str | None = None) -> Game:
        """A copy of the game that can change without changing it: its own copy of the story (with
        the player's line `say` added), no autosave, and its own lore log. Take it on the thread
        that plays the game; a thread may then read it while the game plays on."""
        self._pinned_block()  # made here, not on the copy: the turn to come finds it made (idle time)
        ahead = copy.copy(self)
        ahead.on_commit = None
        ahead.lore_log = list(self.lore_log)  # lore_notes() changes its log in place
        ahead.tree = self.tree.copy()
        ahead._path_facts = self._facts.forked(ahead.tree)
        ahead.note_texts, ahead.silent, ahead.unlocked = dict(self.note_texts), set(self.silent), dict(self.unlocked)
        ahead.player_lore = dict(self.player_lore)
        if text := one_line(say or ""):
            ahead.tree.add(self._line(self.pack.player_id, text, "player", clock=self.clock))
        return ahead

    def _fitted(self, render: Callable[[float], str], share: float) -> tuple[list[int], float]:
        """The tokens of `render`'s texts, shortened to fit `share` of the context, and the scale."""
        return fitted_at(self.session, render, share, pack_id=self.pack.id)

    # -- what the player does -------------------------------------------------------------------

    def say(self, text: str) -> Turn:
        """The player's line, then a line in reply."""
        return self.act("say", text)

    def act(self, how: Act, text: str, *, character: str | None = None) -> Turn:
        """The player acts, then a line in reply: `say` a line as their character; `do` something,
        which the narrator tells ("Ash opens the door."); write the `story` itself (a line of
        narration); or give an `ooc` direction, outside the story, that the next line alone reads
        near the end of its prompt (a reminder, as the author's note is: nothing is spliced).
        `character`: the cast character the player plays (a shared room); default, the pack's player."""
        speaker = character or self.pack.player_id
        text = one_line(text)
        turn = self.continue_story()
        if not text:
            return turn
        if how == "ooc":
            self.direction = text
            self.note_texts[authors_note_id(text, DIRECTION)] = text
        elif how == "say":
            self._commit(self._line(speaker, text, "player", clock=self.clock))
        else:
            name = self.pack.speaker_name(speaker)
            told = text if how == "story" or text.lower().startswith(name.lower()) else f"{name} {text}"
            self._commit(self._line(NARRATOR, told[:1].upper() + told[1:], "narration", clock=self.clock))
        return turn

    def extend(self) -> Completion:
        """The last line, gone on with where it stopped (completion.py: with token healing)."""
        head = self.tree.head
        line = self.tree.nodes[head].line if head else None
        if line is None or line.kind not in ("model", "scripted", "narration"):
            raise UserFacingError(
                "Only a line of the story's can be extended.", hint="Your own lines are yours: edit them (Ctrl+E)."
            )
        return Completion(self, self.sampling.seed, line=line, node_id=head)

    def lead(self, lead: str) -> Completion:
        """A line the player begins for a character, `NAME: TEXT`, finished by the model."""
        return Completion(self, self.sampling.seed, line=led_line(self, one_line(lead)), node_id=None)

    def impersonate(self) -> Impersonation:
        """The player's next line, written by the model and kept nowhere (completion.py)."""
        return Impersonation(self, self.sampling.seed)

    def jump(self, node_id: int) -> None:
        """Go to any line of the story tree: the story is then the path to it (the engine reads
        again only from where the paths part)."""
        self.tree.jump(node_id)
        self._changed()

    def delete_branch(self, node_id: int) -> int:
        """Delete a line and everything after it; returns how many lines went."""
        gone = self.tree.delete(node_id)
        self._changed()
        return len(gone)

    def replace_line(self, node_id: int, line: Line) -> None:
        """A line made longer in place (an extended line): the engine reads it again from its change."""
        self.tree.edit(node_id, line)
        self._changed()

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
        if scene_id not in self.pack.scenes:
            raise UserFacingError(f"No scene '{scene_id}' in this pack.", hint=f"Scenes: {', '.join(self.pack.scenes)}")
        if not self.stage.is_legal(self.pack, command):
            raise UserFacingError(f"The story is already in {self.pack.scenes[scene_id].name}.")
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

    def set_authors_note(self, text: str) -> None:
        """The author's note from the next line on ("" clears it). The lines that carried the old
        one keep it: what the model read stays as it was."""
        self.authors_note = clean_note(text)
        if self.authors_note:
            self.note_texts[authors_note_id(self.authors_note)] = self.authors_note
        self._changed()

    def set_memory(self, summary: str | None = None, essentials: str | None = None) -> int:
        """Correct the summary of the story so far, or the player's plot essentials (None: leave it).
        Both sit in the pinned block, so the next line reads the story again after them: returns
        how many tokens that re-read takes (0 when nothing changed)."""
        before = self.prompt([])
        if summary is not None:
            if not self.lines:
                raise UserFacingError("The story has no line yet to keep a summary on.", hint="Play a line first.")
            self.tree.nodes[self.tree.head].summary = (self.covered, clean_note(summary))
            self.summary_waiting = None  # the player's word stands over one written before it
        if essentials is not None:
            self.essentials = clean_note(essentials)
        self._changed()
        return self._reread_after(before)

    def _reread_after(self, before: Prompt) -> int:
        """Tokens the next line reads again, the prompt having been `before` (0: unchanged)."""
        after = self.prompt([])
        return 0 if after == before else unread(self.session.kv_tokens, after)

    def known_reminders(self) -> list[Reminder]:
        """Every reminder a line may have carried: the pack's, and each author's note of this game."""
        return [*pack_reminders(self.pack), *note_reminders(self.note_texts)]

    def _current_reminders(self) -> list[Reminder]:
        """The reminders the story carries from now on: the pack's, the author's note, and the
        player's direction for the next line."""
        note = [Reminder(authors_note_id(self.authors_note), AUTHORS_NOTE_TAG, self.authors_note)]
        direction = [Reminder(authors_note_id(self.direction, DIRECTION), DIRECTION_TAG, self.direction)]
        return [
            *pack_reminders(self.pack),
            *(note if self.authors_note else []),
            *(direction if self.direction else []),
        ]

    def apply_pack(self, loaded: LoadedPack) -> None:
        """Play on with a changed pack (hot reload); the engine re-reads from the first change."""
        self._as_written = loaded
        self.loaded = self._named(loaded)
        self._stale_pinned()

    def set_persona(self, name: str | None, description: str | None) -> int:
        """Who the player is, from now on (None: the pack's own): their character's name (which
        `{{user}}` says) and description. Both are in the pinned block, so the next line reads the
        story again after them: returns how many tokens that takes. Lines written keep the name
        they were written with."""
        problem = name_problem(name) if name else None
        if problem:
            raise UserFacingError(f"That name cannot be used: {problem}.", hint="Choose a name on one line, in words.")
        before = self.prompt([])
        self.player_name = name or None
        self.player_description = clean_note(description) if description else None
        self.loaded = self._named(self._as_written)
        self._stale_pinned()
        self._changed()
        return self._reread_after(before)

    def set_lore(self, lid: str, entry: LoreEntry | None) -> None:
        """Add or replace the lore entry `lid` (the player's version of a pack's entry is kept in the
        save, not written to the pack); None takes the player's version away (the pack's, if it has
        one, is in play again)."""
        if entry is None:
            self.player_lore.pop(lid, None)
        else:
            self.player_lore[lid] = entry
        self.loaded = self._named(self._as_written)
        self._stale_pinned()  # always-on lore sits in the pinned block
        self._changed()

    def written_lore(self) -> dict[str, LoreEntry]:
        """The pack's lore as its files say (before the player's)."""
        return self._as_written.pack.lore

    def _named(self, loaded: LoadedPack) -> LoadedPack:
        """The pack as the player plays it: their character named and described as they chose, and
        their own lore laid over the pack's."""
        loaded = replace(loaded, pack=laid_over(loaded.pack, self.player_lore))
        pack = loaded.pack
        players = [cid for cid, character in pack.characters.items() if character.player]
        if not (self.player_name or self.player_description) or not players:
            return loaded
        chosen = {"name": self.player_name, "description": self.player_description}
        update = {key: value for key, value in chosen.items() if value}
        player = pack.characters[players[0]].model_copy(update=update)
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
        """A line's tokens from its text, as a turn puts them together: its notes and reminders each
        fitted to their budgets (so a shortened note reads as it did), then its stage line and text."""
        notes, _scale = self._notes_tokens(line.notes)
        reminders, _scales = self._reminder_tokens(line.reminders)
        said = line_text(self.pack, replace(line, notes=(), reminders=()), stage=has_stage_line(self.pack, line))
        return tuple(notes + reminders + self.session.tokenize(said))

    def retokenize(self, node_ids: Iterable[int] | None = None) -> None:
        """Tokenize lines again from their text: every line (a save from another model), or those of
        `node_ids` (a save whose tokens for them were damaged; the others keep what the model read)."""
        for node_id in self.tree.nodes if node_ids is None else node_ids:
            line = self.tree.nodes[node_id].line
            if line is not None:
                self.tree.edit(node_id, replace(line, tokens=self._tokens(line)))

    def _commit(self, line: Line) -> int:
        """Add a line after the head, unlock what it earns, and save."""
        node = self.tree.add(line)
        self._unlock()
        self._changed()
        return node.id

    def _unlock(self) -> None:
        facts, head = self._facts, self.tree.head
        lines = len(self.tree.path())

        def said(words: tuple[str, ...], by: str | None) -> bool:
            return facts.said(head, words, self._mentions, by=by)

        for achievement in newly_unlocked(self.pack, facts.stage_after(head), said, lines, self.unlocked):
            self.unlocked[achievement] = lines

    def _changed(self) -> None:
        if self.on_commit is not None:
            self.on_commit(self)

    # -- what a turn needs (turn.py) ------------------------------------------------------------

    def lore_notes(self) -> tuple[tuple[str, ...], list[int]]:
        """The lore notes the next line brings in (lore.py: keys, recursion, timers, groups, the
        budget), and their tokens, to come before it. The scan is kept for the prompt inspector
        (`last_lore_scan`) and the lore debugger (`lore_log`, where it replaces any scan of the
        same line or later: an undone or regenerated line's)."""
        lines = self.lines
        budget = lore_budget(self.pack.lore_scan.budget, self.session.n_ctx)
        scan = scan_lore(
            self.pack,
            lines,
            window_start=max(self._window_start, self.covered),
            count_tokens=lambda text: len(self.session.tokenize(text)),
            budget=budget,
            seed=lore_seed(self.pack, self.episode, lines),
        )
        self.last_lore_scan = scan
        self.lore_log[:] = [*(logged for logged in self.lore_log if logged.line < scan.line), scan]
        notes = tuple(firing.entry for firing in scan.fired)
        tokens, self.notes_scale = self._notes_tokens(notes)
        return notes, tokens

    def _notes_tokens(self, notes: tuple[str, ...]) -> tuple[list[int], float]:
        """The tokens of a line's lore notes, shortened to fit the lore budget (a first note alone
        over it is shortened to it), and the scale they were shortened to."""
        if not notes:
            return [], 1.0
        share = lore_budget(self.pack.lore_scan.budget, self.session.n_ctx) / self.session.n_ctx
        return self._fitted(lambda scale: note_text(self.pack, notes, scale=scale), share)

    def _reminder_tokens(self, ids: tuple[str, ...]) -> tuple[list[int], dict[str, float]]:
        """The tokens of a line's reminders, each shortened to fit its own share of the context (a
        long author's note never shortens the pack's instructions), and each one's scale."""
        known = self.known_reminders()
        tokens: list[int] = []
        scales: dict[str, float] = {}
        for rid in ids:
            fitted, scales[rid] = self._fitted(lambda scale: reminder_text(known, [rid], scale=scale), REMINDER_SHARE)
            tokens += fitted
        return tokens, scales

    def reminders(self) -> tuple[tuple[str, ...], list[int]]:
        """The reminders the next line carries (reminders.py: the post-history instructions, when
        their last copy is a few lines back or gone from the window), and their tokens."""
        every = self.budgets.remind_every
        ids = tuple(r.id for r in due(self._current_reminders(), self.lines, self.window_start, every))
        tokens, self.reminder_scales = self._reminder_tokens(ids)
        return ids, tokens

    def take_written_ahead(self) -> WrittenAhead:
        """The steps written ahead, for a turn that begins: each serves one turn at most."""
        taken, self.written_ahead = self.written_ahead, WrittenAhead()
        return taken

    def read_ahead_window(self, first_turn: int) -> None:
        """Reading ahead made room for the turn to come: the lines before prompt turn `first_turn`
        left the engine's window (a summary is due for them at once)."""
        self._window_start = min(len(self.lines), max(self._window_start, self.covered + first_turn))

    def add_written_line(self, line: Line, *, first_turn: int) -> int:
        """Commit a line the model wrote; `first_turn` is the oldest turn of its prompt the engine
        still held (the lines before it were evicted: a summary is due for them)."""
        self._window_start = self.covered + first_turn  # as an index into all the lines
        if self.direction and authors_note_id(self.direction, DIRECTION) in line.reminders:
            self.direction = ""  # read once, by the line it was for
        return self._commit(line)

    def restore_head(self, node_id: int) -> None:
        """Show the line `node_id` again (a regenerated line, when the turn wrote no new one)."""
        self.tree.head = node_id
        self._changed()

    # -- memory ---------------------------------------------------------------------------------

    def summary_due(self, *, aside: bool = False) -> SummaryRequest | None:
        """A request for a summary of the lines the engine evicted, if no summary covers them yet
        (nor one waiting to join the prompt); `aside`: beside the story where the model has room
        for it (summary.py), else at the story's end."""
        evicted = self._window_start
        waiting = self._waiting()
        if waiting is not None and evicted <= waiting.request.covers:
            return None
        covered, previous = self.tree.summary_at() or (0, None)
        if evicted <= covered:
            return None
        events = self.lines[covered:evicted]
        story = self.prompt([])
        in_view = Prompt.of(story.pinned, [line.tokens for line in self.lines[self.window_start :]])
        ask = functools.partial(
            summary_request, self.session, self.pack, events, previous,
            covers=evicted, budget=self.budgets.summary, story=story, in_view=in_view, bos=self._bos,
        )  # fmt: skip
        return (aside and ask(aside=True)) or ask()

    def summary_waits(self, request: SummaryRequest, summary: str) -> None:
        """A summary written aside waits for the next idle time to join the prompt: the turn read
        and written ahead meanwhile was read without it, and stays as it was read."""
        self.summary_waiting = WaitingSummary(request, summary, tuple(self.lines[: request.covers]))

    def keep_waiting_summary(self) -> bool:
        """Put the summary waiting in the pinned block, if the lines it covers are still the story's
        (else it is dropped); whether it was kept."""
        waiting, self.summary_waiting = self._waiting(), None
        if waiting is None:
            return False
        self.keep_summary(waiting.request, waiting.text)
        return True

    def _waiting(self) -> WaitingSummary | None:
        """The summary waiting, if the lines it covers are still the first ones of the story, as
        they were, and no summary in the story covers as much."""
        waiting = self.summary_waiting
        if waiting is None or waiting.request.covers <= self.covered:
            return None
        lines = self.lines
        if len(lines) < len(waiting.lines) or any(a is not b for a, b in zip(lines, waiting.lines, strict=False)):
            return None
        return waiting

    def idle_work(
        self, draft: Callable[[], str] | None = None, *, read_ahead: bool = True, write_ahead: bool = True
    ) -> IdleWork | None:
        """The work due in idle time (idle_work.py): the summary of lines the engine evicted that
        no summary covers yet, reading what the model has not read of the story and of the
        player's line being typed (`draft`, asked for when reading ahead begins), and writing the
        first steps of that line's turn; None if none.
        Without `read_ahead` (a script: no one reads or types between its entries), the summary only;
        without `write_ahead`, no turn's steps are written (to measure what writing ahead saves)."""
        request = self.summary_due()
        if request is None and not read_ahead:
            return None
        if request is None and self._waiting() is None:
            typed = draft() if draft is not None else ""
            ahead = self.read_ahead_prompt(typed)
            written = (
                not write_ahead or not one_line(typed) or self.written_ahead.finished(ahead, self.session.kv_tokens)
            )
            if written and unread(self.session.kv_tokens, ahead) < READ_AHEAD_MIN:
                return None
        return IdleWork(self, request, draft, read_ahead=read_ahead, write_ahead=write_ahead)

    def read_ahead_prompt(self, draft: str = "") -> Prompt:
        """What the model may read before the player sends: the story; with the line `draft` the
        player is typing, the story with that line said and what its turn reads before writing."""
        if not one_line(draft):
            return self.prompt([])
        ahead = self.looking_ahead(draft)
        return Opening.of(ahead).stage_prompt(ahead)

    def keep_summary(self, request: SummaryRequest, summary: str) -> None:
        """Put `summary` in the pinned block: the lines it covers leave the prompt from now on."""
        # Model text: kept, shown (the Memory screen) and read again without control characters.
        self.tree.nodes[self.tree.head].summary = (request.covers, clean_note(summary))
        self._changed()
