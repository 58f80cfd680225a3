"""The play screen: the stage, the story streaming in, the player's line, and every story control.

With the input line empty, ←/→ switch the last line's variants and ↑/↓ step back and forward, as
in a visual novel; while typing they move the cursor as usual (Alt+arrows always work).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input

from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import NARRATOR
from ..settings import GraphicsMode
from ..story import Game, Line, SavedGame, Stage, Turn
from ..story.completion import Completion
from ..story.game import ACTS, MAX_NOTE_CHARS, Act
from ..story.idle_work import IdleWork
from ..story.saves import copy_name, export_path, export_transcript
from ..untrusted_text import printable
from .lore_screen import LoreScreen
from .memory_screen import MemoryScreen
from .messages import SavesRequested
from .note_screen import NoteScreen
from .notify import notify_plain
from .persona_screen import PersonaScreen
from .prompt_panel import PromptPanel
from .stage_image import compose_stage
from .stage_view import StageView
from .status_line import StatusLine
from .transcript import LineView, Transcript
from .tree_screen import TreeScreen

TYPING_PAUSE = 0.4  # seconds without a key: the player paused typing, the line so far is read ahead
REMEMBERING = "remembering: a summary of the oldest lines…"  # the status line while a summary is written


class LineInput(Input):
    """The player's line; empty, its arrow keys steer the story instead of the cursor."""

    STEERING = {"left": "variant(-1)", "right": "variant(1)", "up": "undo", "down": "redo"}

    async def on_key(self, event: events.Key) -> None:
        action = self.STEERING.get(event.key)
        if action is not None and not self.value:
            event.stop()  # stopped here, the key never reaches the cursor's bindings
            event.prevent_default()
            await self.run_action(f"screen.{action}")


class PlayScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Stop writing"),
        Binding("ctrl+n", "continue_story", "Continue"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        # priority: the input line would take these for moving between words
        Binding(
            "alt+left,ctrl+left", "variant(-1)", "Previous variant (← with an empty line)", show=False, priority=True
        ),
        Binding("alt+right,ctrl+right", "variant(1)", "Next variant (→ with an empty line)", show=False, priority=True),
        Binding("ctrl+z,alt+up", "undo", "Step back (↑ with an empty line)", show=False, priority=True),
        Binding("ctrl+y,alt+down", "redo", "Step forward (↓ with an empty line)", show=False, priority=True),
        Binding("ctrl+e", "edit_last", "Edit the last line", show=False, priority=True),
        Binding("ctrl+s", "branch", "Save a copy", priority=True),
        Binding("f3", "saves", "Saves"),
        Binding("f6", "toggle_inspector", "Prompt inspector"),
        Binding("f7", "authors_note", "Author's note"),
        Binding("f8", "memory", "Memory", show=False),
        Binding("f9", "persona", "Persona", show=False),
        Binding("f10", "lore", "Lore", show=False),
        Binding("ctrl+b", "story_tree", "The story tree", show=False, priority=True),
        Binding("ctrl+t", "cycle_act", "Say / do / story / ooc", show=False, priority=True),
        Binding("ctrl+g", "extend", "Go on with the last line", show=False, priority=True),
        Binding("ctrl+o", "impersonate", "Write my next line for me", show=False, priority=True),
        Binding("pageup", "scroll_transcript(-1)", "Scroll back through the story", show=False),
        Binding("pagedown", "scroll_transcript(1)", "Scroll forward through the story", show=False),
        *(
            Binding(f"alt+{n}", f"toggle_speaker({n})", f"Let character {n} speak, or not", show=False, priority=True)
            for n in range(1, 10)
        ),
    ]

    class PackReloaded(Message):
        """A save of the pack's files is in play now: the app follows its theme."""

    busy = var(False, init=False)  # a turn is starting or running: one at a time
    act: var[Act] = var("say", init=False)  # how the player's next entry acts (Ctrl+T, or a /do… prefix)

    def __init__(self, saved: SavedGame, *, graphics: GraphicsMode = "auto") -> None:
        super().__init__()
        self.saved = saved
        self.graphics = graphics
        self.turn: Turn | None = None
        self.idle_job: IdleWork | None = None  # the idle work running (story/idle_work.py)
        self._stop_asked = False  # Esc before the turn began (its tokens were being asked of a server)
        self._typing: Timer | None = None  # until the player pauses typing
        self.editing: int | None = None  # the line being edited (its node id)
        self._stage_drawn: tuple[Stage, int] | None = None

    @property
    def game(self) -> Game:
        return self.saved.game

    def compose(self) -> ComposeResult:
        player = printable(self.game.pack.player.name)
        yield Header()
        with Horizontal(id="play-area"):
            with Vertical(id="play-column"):
                yield StageView(self.graphics, id="stage")
                yield Transcript(id="transcript")
                yield LineInput(placeholder=_placeholder("say", player), id="say")
                yield StatusLine(id="status")
            yield PromptPanel(id="inspector")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(self.game.pack.name)
        status = self.query_one(StatusLine)
        status.save, status.n_ctx = self.saved.path.stem, self.game.session.n_ctx
        self._show_story()
        self.query_one(Input).focus()
        for warning in self.saved.warnings:
            notify_plain(self, warning, title="Loaded with warnings", severity="warning")
        self.follow_pack_files()
        self._start_idle_work()  # a resumed story may have a summary due: written while the player reads

    def watch_busy(self, busy: bool) -> None:
        self.query_one(StatusLine).activity = "starting…" if busy else ""

    # -- the story on screen ----------------------------------------------------------------------

    def _show_story(self) -> None:
        """The story as it stands now (after an undo, a variant, an edit, a turn that wrote nothing)."""
        self.query_one(Transcript).replace(self._view_for(line) for line in self.game.lines)
        self._show_stage(self.game.stage)
        self._show_facts()
        self._show_prompt()

    def _show_stage(self, stage: Stage) -> None:
        """Redraw the stage when it changed (scene, cast, expressions; or the pack's images)."""
        key = (stage, id(self.game.pack))
        if key != self._stage_drawn:
            self._stage_drawn = key
            self.query_one(StageView).show(compose_stage(self.game.loaded, stage))

    def _show_facts(self) -> None:
        """The status line's story facts: the scene and cast, the time, the variant, the context."""
        game, status = self.game, self.query_one(StatusLine)
        stage = game.stage
        scene = game.pack.scenes[stage.scene].name if stage.scene in game.pack.scenes else ""
        cast = ", ".join(game.pack.speaker_name(c) + (" (silent)" if c in game.silent else "") for c in stage.cast)
        index, count = game.variants()
        status.place = f"{scene} ({cast})" if cast else scene
        status.clock = f"{game.clock}"
        status.variant = f"variant {index + 1}/{count}" if count > 1 else ""
        status.kv_tokens = len(game.session.kv_tokens)

    def _show_prompt(self) -> None:
        """The inspector's view of the next line's prompt, when it is open and no line is being written."""
        panel = self.query_one(PromptPanel)
        if panel.has_class("shown") and not self.busy:
            self._inspect(panel, self.game.looking_ahead())  # the copy taken here, where the game plays

    @work(exclusive=True, group="inspector", thread=True)
    def _inspect(self, panel: PromptPanel, game: Game) -> None:
        # In a thread: the tokenizer may be a model server's, a request away.
        try:
            view = game.prompt_view()
        except Exception as error:  # noqa: BLE001 - the inspector must never take the game down
            message = error.render() if isinstance(error, UserFacingError) else f"{type(error).__name__}: {error}"
            self.app.call_from_thread(notify_plain, self, message, title="No prompt to show", severity="error")
            return
        self.app.call_from_thread(panel.show, view, game.lore_log)

    def _view_for(self, line: Line) -> LineView:
        view = LineView(None, "")
        self._name_view(view, line.speaker)
        view.set_text(line.text)
        return view

    def _name_view(self, view: LineView, speaker: str) -> None:
        pack = self.game.pack
        if speaker == NARRATOR:
            view.set_speaker(pack.speaker_name(NARRATOR), "", narration=True)
            return
        character = pack.characters.get(speaker)
        view.set_speaker(pack.speaker_name(speaker), character.color if character else "#c0c0c0", narration=False)

    # -- hot reload -------------------------------------------------------------------------------

    @work(exclusive=True, group="pack-watch")
    async def follow_pack_files(self) -> None:
        async for change in self.game.follow_pack_changes():
            if isinstance(change, LoadedPack):
                for view, line in zip(self.query(LineView), self.game.lines):
                    self._name_view(view, line.speaker)
                self.sub_title = printable(change.pack.name)
                self._show_stage(self.game.stage)
                self._show_facts()  # the scene's and the cast's names may have changed
                self.post_message(self.PackReloaded())
                notify_plain(self, f"{change.pack.name}: the change is in play.", title="Pack reloaded", timeout=3)
            else:
                notify_plain(
                    self,
                    change.message,
                    title="Pack not reloaded: still playing the last good version",
                    severity="error",
                    timeout=20,
                )

    # -- what the player does ---------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.busy:
            self.app.bell()  # one line at a time: Esc stops the one being written
            return
        event.input.clear()
        if self.editing is not None:
            node, self.editing = self.editing, None
            self.game.edit(event.value, node)
            self._show_story()
            return
        act, text = self.act, event.value
        word, _, rest = text.partition(" ")
        if word == "/lead":  # "/lead Mira: The lamp is": the model finishes the line
            self._try_write(lambda: self.game.lead(rest))
            return
        if word.startswith("/") and word[1:] in ACTS:  # "/do opens the door": this entry only
            act, text = next(a for a in ACTS if a == word[1:]), rest
        # On a server, the line's tokens are asked for off the event loop, on a copy of the game.
        self.write(lambda: self.game.act(act, text), ahead=lambda: self.game.looking_ahead().act(act, text))

    def action_extend(self) -> None:
        """Ctrl+G: the last line goes on where it stopped."""
        if self._idle():
            self._try_write(self.game.extend)

    def action_impersonate(self) -> None:
        """Ctrl+O: the model writes the player's next line into the line input, to edit and send."""
        if self._idle():
            self.busy = True
            self._impersonate()

    @work(exclusive=True, group="turn")
    async def _impersonate(self) -> None:
        field = self.query_one(LineInput)
        field.value = ""
        self.turn = turn = self.game.impersonate()
        try:
            async for piece in turn:
                field.value += piece
        except UserFacingError as error:
            notify_plain(self, error.render(), title="No line was written", severity="error")
        finally:
            self.turn = None
            self.busy = False
        field.value = turn.text
        field.cursor_position = len(field.value)
        field.focus()

    def _try_write(self, start: Callable[[], Turn]) -> None:
        """Start a line that may be refused before it starts (who may not speak, what cannot be extended)."""
        try:
            turn = start()
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Not now", severity="warning")
            return
        self.write(lambda: turn)

    def action_cycle_act(self) -> None:
        """Ctrl+T: say, do, story, ooc, and round again."""
        self.act = ACTS[(ACTS.index(self.act) + 1) % len(ACTS)]

    def watch_act(self, act: Act) -> None:
        self.query_one(LineInput).placeholder = _placeholder(act, printable(self.game.pack.player.name))

    def _idle(self) -> bool:
        """Whether a story action may run now; any of them ends an edit in progress, and a summary
        being written in idle time (the next idle time writes it)."""
        if self.busy:
            return False
        self._stop_idle_work()
        if self.editing is not None:
            self.editing = None
            self.query_one(Input).clear()
        return True

    def action_continue_story(self) -> None:
        if self._idle():
            self.write(self.game.continue_story)

    def action_regenerate(self) -> None:
        if self._idle():
            self.write(self.game.regenerate)

    def action_stop(self) -> None:
        if self.turn is not None:
            self.turn.cancel()
        elif self.busy:  # the line's tokens are still asked of a server: the turn will not start
            self._stop_asked = True
        else:
            self._idle()

    def action_undo(self) -> None:
        if self._idle() and self.game.undo():
            self._show_story()

    def action_redo(self) -> None:
        if self._idle() and self.game.redo():
            self._show_story()

    def action_variant(self, step: int) -> None:
        if self._idle():
            self.game.switch_variant(step)
            self._show_story()

    def action_toggle_speaker(self, number: int) -> None:
        """Alt+1…9: the pack's characters (the player aside), in order, may speak or not."""
        cast = [cid for cid, character in self.game.pack.characters.items() if not character.player]
        if number <= len(cast):
            speaks = self.game.toggle_speaker(cast[number - 1])
            name = self.game.pack.speaker_name(cast[number - 1])
            notify_plain(self, f"{name} {'may speak' if speaks else 'will not speak'}.", timeout=2)
            self._show_facts()

    def action_scroll_transcript(self, pages: int) -> None:
        transcript = self.query_one(Transcript)
        y = max(0.0, transcript.scroll_y + pages * max(1, transcript.size.height - 2))
        if y >= transcript.max_scroll_y:  # at the end: it follows the newest line again
            transcript.scroll_end(animate=False)
        else:  # anywhere else it lets go of it, and the reader's place stays as lines come
            transcript.scroll_to(y=y, animate=False)

    def action_branch(self) -> None:
        """A copy of the game as it stands, under a new name (the game goes on in its own save)."""
        if self._idle():
            try:
                copy = self.saved.save_copy(copy_name(self.game.pack.id, self.saved.path.stem))
            except UserFacingError as error:  # no free name for a copy this second
                notify_plain(self, error.render(), title="Not saved", severity="error")
                return
            notify_plain(self, f"A copy was saved as '{copy.stem}'.", title="Saved")

    def action_export(self) -> None:
        try:
            target = export_path(self.game.pack.id, self.saved.path.stem)
            export_transcript(self.game, target)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Not exported", severity="error")
            return
        notify_plain(self, f"Written to {target}", title="Exported")

    def action_toggle_inspector(self) -> None:
        """F6: the prompt inspector and the lore debugger, beside the story."""
        panel = self.query_one(PromptPanel)
        panel.toggle_class("shown")
        self._show_prompt()

    def action_authors_note(self) -> None:
        """F7: the author's note, in a modal; what is kept applies from the next line."""
        self.app.push_screen(NoteScreen(self.game.authors_note, self.game.budgets.remind_every), self._keep_note)

    def _keep_note(self, note: str | None) -> None:
        if note is None or note.strip() == self.game.authors_note:
            return
        self.game.set_authors_note(note)
        message = "The model reads it from the next line." if self.game.authors_note else "Removed."
        if len(note.strip()) > MAX_NOTE_CHARS:
            message += f" It was shortened to its first {MAX_NOTE_CHARS:,} characters."
        notify_plain(self, message, title="Author's note")
        self._show_prompt()

    def action_memory(self) -> None:
        """F8: the summary and the plot essentials, shown and corrected."""
        if self._idle():
            game = self.game
            screen = MemoryScreen(game.summary or "", game.essentials, has_lines=bool(game.lines))
            self.app.push_screen(screen, self._keep_memory)

    def _keep_memory(self, memory: tuple[str, str] | None) -> None:
        if memory is None:
            return
        summary, essentials = memory
        try:
            cost = self.game.set_memory(summary=summary if self.game.lines else None, essentials=essentials)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Memory", severity="error")
            return
        if cost:
            self.query_one(StatusLine).reread = cost
            notify_plain(self, f"Kept. The next line reads {cost:,} tokens of the story again.", title="Memory")
        self._show_prompt()

    def action_persona(self) -> None:
        """F9: who the player is, changed during play."""
        if self._idle():
            player = self.game.pack.player
            self.app.push_screen(PersonaScreen(player.name, player.description), self._keep_persona)

    def _keep_persona(self, persona: tuple[str, str] | None) -> None:
        player = self.game.pack.player
        if persona is None or persona == (player.name, player.description):
            return
        name, description = persona
        try:
            cost = self.game.set_persona(name or None, description.strip() or None)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="Persona", severity="error")
            return
        if cost:
            self.query_one(StatusLine).reread = cost
        notify_plain(self, f"You are {self.game.pack.player.name} from the next line on.", title="Persona")
        self.watch_act(self.act)  # the line input names the player
        self._show_prompt()

    def action_story_tree(self) -> None:
        """Ctrl+B: every line, variant and branch; go anywhere, compare, branch a save, delete."""
        if self._idle():
            self.app.push_screen(TreeScreen(self.saved), self._jump)

    def _jump(self, node_id: int | None) -> None:
        if node_id is not None and node_id in self.game.tree.nodes:
            self.game.jump(node_id)
        self._show_story()  # a branch deleted in the tree screen shows too

    def action_lore(self) -> None:
        """F10: the lore in play, and the player's own entries added, edited, disabled, deleted."""
        if self._idle():
            self.app.push_screen(LoreScreen(self.game), self._lore_changed)

    def _lore_changed(self, changed: bool | None) -> None:
        if changed:
            self._show_prompt()

    def action_saves(self) -> None:
        if self._idle():
            self.post_message(SavesRequested(self.game.loaded))

    def action_edit_last(self) -> None:
        lines = self.game.lines
        if self._idle() and lines:
            self.editing = self.game.tree.head
            field = self.query_one(Input)
            field.value = lines[-1].text
            field.cursor_position = len(field.value)
            field.focus()
            notify_plain(self, "Enter saves the edit; Esc leaves the line as it was.", title="Editing the last line")

    # -- a turn -----------------------------------------------------------------------------------

    def write(self, start: Callable[[], Turn], ahead: Callable[[], object] | None = None) -> None:
        """Play the turn `start` begins. `ahead` does what `start` does on a copy of the game (taken
        in a thread): run first where tokenizing would make the screen wait (a model server), it
        has the line's new texts tokenized there."""
        self._stop_idle_work()
        self.busy = True  # before the worker starts: a second Enter must not start a second turn
        self._write(start, ahead)

    @work(exclusive=True, group="turn")
    async def _write(self, start: Callable[[], Turn], ahead: Callable[[], object] | None) -> None:
        transcript = self.query_one(Transcript)
        lines_before = len(self.game.lines)
        try:
            if ahead is not None:
                self._stop_asked = False
                await self.game.session.tokens_ahead(ahead)
                if self._stop_asked:  # Esc while a server tokenized the line: no turn, nothing changed
                    return
            turn = self.turn = start()
            if len(self.game.lines) < lines_before:  # regenerate stepped back over the old variant
                self._show_story()
            if isinstance(turn, Completion) and turn.extending:  # the last line goes on where it is
                view = transcript.query(LineView).last()
            else:
                view = LineView(None, "")
                transcript.add([*(self._view_for(line) for line in self.game.lines[lines_before:]), view])
                if isinstance(turn, Completion):  # a led line: the player's beginning shows first
                    self._name_view(view, turn.speaker or NARRATOR)
                    view.append(turn.begun)
            self._show_facts()
            self.follow_progress(turn)
            async for piece in turn:
                if view.speaker_name is None:
                    self._show_stage(self._stage_of(turn))
                if view.speaker_name is None and turn.speaker is not None:
                    self._name_view(view, turn.speaker)
                view.append(piece)
        except UserFacingError as error:  # a model server gone, a pinned block the context cannot hold…
            message = error.render()
            if len(self.game.lines) > lines_before:  # the player's own line is in, and stays
                message += "\nYour line is kept: Ctrl+N asks for the reply again."
            notify_plain(self, message, title="No line was written", severity="error")
            self._show_story()
            return
        finally:
            self.turn = None
            self.busy = False
        if turn.node_id is None:
            self._show_story()  # nothing written: show the story as it is (a regenerated line back)
        else:
            view.set_text(self.game.lines[-1].text)
        written = turn.result or turn.head  # the line's text, or the head a server wrote it with
        if written is not None and written.tokens_per_second:
            self.query_one(StatusLine).speed = written.tokens_per_second
        self.query_one(StatusLine).reread = 0  # paid
        for achievement in turn.unlocked:
            notify_plain(self, self.game.pack.achievements[achievement].title, title="Achievement unlocked")
        await self.saved.after_turn()
        self._show_stage(self.game.stage)
        self._show_facts()
        self._show_prompt()
        self._start_idle_work()

    # -- idle time ----------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if not isinstance(event.input, LineInput):
            return
        if self._typing is not None:
            self._typing.stop()
        self._typing = self.set_timer(TYPING_PAUSE, self._read_draft_ahead)

    def _read_draft_ahead(self) -> None:
        """The player paused typing: the model reads their line so far, and what its turn would
        read first, so that sending it starts the line at once. A summary being written goes on:
        it reads the line as it is then, when it is done."""
        if self.busy or not self.is_current:  # a turn, or a screen over this one: the line waits
            return
        if self.idle_job is not None and self.idle_job.summarising:  # ask again once it is written
            self._typing = self.set_timer(TYPING_PAUSE, self._read_draft_ahead)
            return
        self._start_idle_work()

    def _draft(self) -> str:
        """The line being typed, for reading ahead: not an edit, a command or another act than saying."""
        fields = self.query(LineInput)  # none once the screen is gone
        text = fields.first().value if fields else ""
        return "" if self.editing is not None or self.act != "say" or text.startswith("/") else text

    def _start_idle_work(self) -> None:
        """While the player reads and types: the summary the game has due, and reading ahead."""
        self._stop_idle_work()
        self._do_idle_work()

    @work(exclusive=True, group="idle-work")
    async def _do_idle_work(self) -> None:
        draft = self._draft()
        # Deciding what is due tokenizes the line being typed: a server's tokens come off the event loop.
        await self.game.session.tokens_ahead(lambda: self.game.idle_work(lambda: draft))
        if self.busy or self._draft() != draft:
            return  # the player sent a line, or typed on (the typing pause starts this again)
        job = self.game.idle_work(self._draft)
        if job is None:
            return
        self.idle_job = job
        status = self.query_one(StatusLine)
        status.idle_work = REMEMBERING if job.summarising else "reading ahead…"

        def remembering() -> None:  # a summary begins (with room aside, after reading ahead)
            if self.idle_job is job:
                status.idle_work = REMEMBERING

        try:
            if await job.run(remembering):
                self._show_prompt()
        finally:
            if self.idle_job is job:
                self.idle_job = None
                for status in self.query(StatusLine):  # none when the screen is gone meanwhile
                    status.idle_work = ""

    def _stop_idle_work(self) -> None:
        """The player acts: a summary being written stops at once (the engine aborts it)."""
        if self._typing is not None:
            self._typing.stop()
            self._typing = None
        if self.idle_job is not None:
            self.idle_job.cancel()
            self.idle_job = None
            for status in self.query(StatusLine):
                status.idle_work = ""
        else:  # still deciding what is due (tokenizing the typed line): nothing to stop but that
            self.workers.cancel_group(self, "idle-work")

    def _stage_of(self, turn: Turn) -> Stage:
        """The stage as this turn's commands leave it, as soon as they are written."""
        stage = self.game.stage
        for command in turn.directions:
            if stage.is_legal(self.game.pack, command):
                stage = stage.apply(self.game.pack, command)
        return stage

    @work(group="progress")
    async def follow_progress(self, turn: Turn) -> None:
        """While a turn reads the story, say how far it is."""
        status = self.query_one(StatusLine)
        while self.turn is turn:
            status.activity = _activity(turn)
            status.kv_tokens = len(self.game.session.kv_tokens)
            await asyncio.sleep(0.2)


def _placeholder(act: Act, player: str) -> str:
    """What the line input asks for, in each way of acting (the keys to change it included)."""
    return {
        "say": f"Say something as {player}, or Enter to go on · Ctrl+T: do, story, ooc",
        "do": f"Do something as {player}: the narrator tells it · Ctrl+T: story",
        "story": "Write the story: a line of narration · Ctrl+T: ooc",
        "ooc": "A direction for the next line, outside the story · Ctrl+T: say",
    }[act]


def _activity(turn: Turn) -> str:
    if turn.first_text_at is None and 0.0 < turn.reading < 1.0:
        return f"reading the story… {turn.reading:.0%} (Esc stops)"
    return "writing… (Esc stops)"
