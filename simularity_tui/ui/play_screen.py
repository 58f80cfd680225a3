"""The play screen: the stage, the story streaming in, the player's line, and every story control.

With the input line empty, ←/→ switch the last line's variants and ↑/↓ step back and forward, as
in a visual novel; while typing they move the cursor as usual (Alt+arrows always work).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, Static

from .. import paths
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import NARRATOR
from ..settings import GraphicsMode
from ..story import Game, Line, SavedGame, Turn
from ..story.saves import copy_name, save_path, transcript_markdown, write_save
from ..untrusted_text import printable
from .screen_base import SimularityScreen
from .stage_image import compose_stage
from .stage_view import StageView
from .transcript import LineView, Transcript


class LineInput(Input):
    """The player's line; empty, its arrow keys steer the story instead of the cursor."""

    STEERING = {"left": "variant(-1)", "right": "variant(1)", "up": "undo", "down": "redo"}

    async def _on_key(self, event: events.Key) -> None:
        action = self.STEERING.get(event.key)
        if action is not None and not self.value:
            event.stop()
            event.prevent_default()
            await self.screen.run_action(action)
            return
        await super()._on_key(event)


class PlayScreen(SimularityScreen):
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
        Binding("pageup", "scroll_transcript(-1)", "Scroll back through the story", show=False),
        Binding("pagedown", "scroll_transcript(1)", "Scroll forward through the story", show=False),
        *(
            Binding(f"alt+{n}", f"toggle_speaker({n})", f"Let character {n} speak, or not", show=False, priority=True)
            for n in range(1, 10)
        ),
    ]

    def __init__(self, saved: SavedGame, *, graphics: GraphicsMode = "auto") -> None:
        super().__init__()
        self.saved = saved
        self.graphics = graphics
        self.turn: Turn | None = None
        self.busy = False  # a turn is starting or running: one at a time
        self.editing: int | None = None  # the line being edited (its node id)
        self.tokens_per_second = 0.0
        self._stage_drawn: tuple[object, int] | None = None

    @property
    def game(self) -> Game:
        return self.saved.game

    def compose(self) -> ComposeResult:
        player = printable(self.game.pack.player.name)
        yield Header()
        yield StageView(self.graphics, id="stage")
        yield Transcript(id="transcript")
        yield LineInput(placeholder=f"Say something as {player}, or press Enter to let the story go on", id="say")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(self.game.pack.name)
        self._show_transcript()
        self.query_one(Input).focus()
        for warning in self.saved.warnings:
            self.notify(printable(warning), title="Loaded with warnings", severity="warning", markup=False)
        self.watch_pack_files()

    # -- the transcript -------------------------------------------------------------------------

    def _show_transcript(self) -> None:
        transcript = self.query_one(Transcript)
        transcript.remove_children()
        for line in self.game.lines:
            transcript.add(self._view_for(line))
        self._show_stage()
        self._show_status()

    def _show_stage(self) -> None:
        """Redraw the stage when it changed (scene, cast, expressions; or the pack's images)."""
        stage = self.game.stage
        key = (stage, id(self.game.pack))
        if key != self._stage_drawn:
            self._stage_drawn = key
            self.query_one(StageView).show(compose_stage(self.game.loaded, stage))

    def _view_for(self, line: Line) -> LineView:
        view = LineView(None, "")
        self._name_view(view, line.speaker)
        view.set_text(line.text)
        return view

    def _name_view(self, view: LineView, speaker: str) -> None:
        pack = self.game.pack
        if speaker == NARRATOR:
            view.set_speaker("Narrator", "", narration=True)
            return
        character = pack.characters.get(speaker)
        view.set_speaker(pack.speaker_name(speaker), character.color if character else "#c0c0c0", narration=False)

    # -- hot reload -------------------------------------------------------------------------------

    @work(exclusive=True, group="pack-watch")
    async def watch_pack_files(self) -> None:
        async for change in self.game.follow_pack_changes():
            if isinstance(change, LoadedPack):
                for view, line in zip(self.query(LineView), self.game.lines):
                    self._name_view(view, line.speaker)
                self.sub_title = printable(change.pack.name)
                self.simularity.pack = change
                self.simularity.apply_theme()
                self._show_stage()
                self._show_status()  # the scene's and the cast's names may have changed
                self.notify(
                    printable(f"{change.pack.name}: the change is in play."),
                    title="Pack reloaded",
                    timeout=3,
                    markup=False,
                )
            else:  # pack text is a stranger's: shown as plain text, never as markup
                self.notify(
                    printable(change.message),
                    title="Pack not reloaded: still playing the last good version",
                    severity="error",
                    timeout=20,
                    markup=False,
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
            self._show_transcript()
            return
        self.write(lambda: self.game.say(event.value))

    def _idle(self) -> bool:
        """Whether a story action may run now; any of them ends an edit in progress."""
        if self.busy:
            return False
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
        else:
            self._idle()

    def action_undo(self) -> None:
        if self._idle() and self.game.undo():
            self._show_transcript()

    def action_redo(self) -> None:
        if self._idle() and self.game.redo():
            self._show_transcript()

    def action_variant(self, step: int) -> None:
        if self._idle():
            self.game.switch_variant(step)
            self._show_transcript()

    def action_toggle_speaker(self, number: int) -> None:
        """Alt+1…9: the pack's characters (the player aside), in order, may speak or not."""
        cast = [cid for cid, character in self.game.pack.characters.items() if not character.player]
        if number <= len(cast):
            speaks = self.game.toggle_speaker(cast[number - 1])
            name = self.game.pack.speaker_name(cast[number - 1])
            self.notify(printable(f"{name} {'may speak' if speaks else 'will not speak'}."), markup=False, timeout=2)
            self._show_status()

    def action_scroll_transcript(self, pages: int) -> None:
        transcript = self.query_one(Transcript)
        transcript.scroll_to(y=transcript.scroll_y + pages * max(1, transcript.size.height - 2), animate=False)

    def action_branch(self) -> None:
        """A copy of the game as it stands, under a new name (the game goes on in its own save)."""
        if self._idle():
            name = copy_name(self.game.pack.id, self.saved.path.stem)
            write_save(save_path(self.game.pack.id, name), game=self.game, created=self.saved.created)
            self.notify(printable(f"A copy was saved as '{name}'."), title="Saved", markup=False)

    def action_export(self) -> None:
        target = paths.data_dir() / "exports" / f"{self.game.pack.id} - {self.saved.path.stem}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(transcript_markdown(self.game), encoding="utf-8")
        self.notify(printable(f"Written to {target}"), title="Exported", markup=False)

    def action_saves(self) -> None:
        from .saves_screen import SavesScreen

        if self._idle():
            self.app.push_screen(SavesScreen(self.game.loaded))

    def action_edit_last(self) -> None:
        lines = self.game.lines
        if self._idle() and lines:
            self.editing = self.game.tree.head
            field = self.query_one(Input)
            field.value = lines[-1].text
            field.cursor_position = len(field.value)
            field.focus()
            self.notify("Enter saves the edit; Esc leaves the line as it was.", title="Editing the last line")

    def write(self, start: Callable[[], Turn]) -> None:
        self.busy = True  # before the worker starts: a second Enter must not start a second turn
        self._write(start)

    @work(exclusive=True, group="turn")
    async def _write(self, start: Callable[[], Turn]) -> None:
        transcript = self.query_one(Transcript)
        lines_before = len(self.game.lines)
        try:
            turn = self.turn = start()
            if len(self.game.lines) < lines_before:  # regenerate stepped back over the old variant
                self._show_transcript()
            for line in self.game.lines[lines_before:]:
                transcript.add(self._view_for(line))
            view = transcript.add(LineView(None, ""))
            self._show_status()
            self.watch_progress(turn)
            async for piece in turn:
                if view.speaker_name is None:
                    self._show_stage_of(turn)
                if view.speaker_name is None and turn.speaker is not None:
                    self._name_view(view, turn.speaker)
                view.append(piece)
                transcript.follow()
        except UserFacingError as error:  # a model server gone, a pinned block the context cannot hold…
            message = error.render()
            if len(self.game.lines) > lines_before:  # the player's own line is in, and stays
                message += "\nYour line is kept: Ctrl+N asks for the reply again."
            self.notify(printable(message), title="No line was written", severity="error", markup=False)
            self._show_transcript()
            return
        finally:
            self.turn = None
            self.busy = False
        if turn.node_id is None:
            self._show_transcript()  # nothing written: show the story as it is (a regenerated line back)
        else:
            view.set_text(self.game.lines[-1].text)
        if turn.result is not None and turn.result.tokens_per_second:
            self.tokens_per_second = turn.result.tokens_per_second
        for achievement in turn.unlocked:
            title = self.game.pack.achievements[achievement].title
            self.notify(printable(title), title="Achievement unlocked", markup=False)
        await self.saved.after_turn()
        self._show_stage()
        self._show_status()

    def _show_stage_of(self, turn: Turn) -> None:
        """The stage as this turn's commands leave it, as soon as they are written."""
        stage = self.game.stage
        for command in turn.directions:
            if stage.is_legal(self.game.pack, command):
                stage = stage.apply(self.game.pack, command)
        key = (stage, id(self.game.pack))
        if key != self._stage_drawn:
            self._stage_drawn = key
            self.query_one(StageView).show(compose_stage(self.game.loaded, stage))

    @work(group="progress")
    async def watch_progress(self, turn: Turn) -> None:
        """While a turn reads the story or writes a summary, say how far it is."""
        while self.turn is turn:
            self._show_status()
            await asyncio.sleep(0.2)

    def _show_status(self) -> None:
        game, session = self.game, self.game.session
        stage = game.stage
        scene = game.pack.scenes[stage.scene].name if stage.scene in game.pack.scenes else ""
        cast = ", ".join(game.pack.speaker_name(c) + (" (silent)" if c in game.silent else "") for c in stage.cast)
        index, count = game.variants()
        parts = [
            f"{scene} ({cast})" if cast else scene,
            f"{game.clock}",
            f"variant {index + 1}/{count}" if count > 1 else "",
            f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else "",
            f"context {len(session.kv_tokens):,}/{session.n_ctx:,}",
            self._activity() if self.busy else f"saved: {self.saved.path.stem}",
        ]
        self.query_one("#status", Static).update(Text(printable(" · ".join(part for part in parts if part))))

    def _activity(self) -> str:
        turn = self.turn
        if turn is None:
            return "starting…"
        if turn.phase == "summary":
            return "remembering: writing a summary… (Esc stops)"
        if turn.first_text_at is None and 0.0 < turn.reading < 1.0:
            return f"reading the story… {turn.reading:.0%} (Esc stops)"
        return "writing… (Esc stops)"
