"""The play screen: the story streaming in, the player's line, and how the engine is doing."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from ..scenario.loader import LoadedPack
from ..scenario.schema import NARRATOR
from ..story import Line, Playthrough, Reply
from ..untrusted_text import printable
from .transcript import LineView, Transcript


class PlayScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Stop writing"),
        Binding("ctrl+n", "continue_story", "Continue"),
    ]

    def __init__(self, playthrough: Playthrough) -> None:
        super().__init__()
        self.playthrough = playthrough
        self.reply: Reply | None = None
        self.tokens_per_second = 0.0

    def compose(self) -> ComposeResult:
        player = self.playthrough.pack.player.name
        yield Header()
        yield Transcript(id="transcript")
        yield Input(placeholder=f"Say something as {player}, or press Enter to let the story go on", id="say")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.app.sub_title = self.playthrough.pack.name
        transcript = self.query_one(Transcript)
        for line in self.playthrough.lines:
            transcript.add(self._view_for(line))
        self.query_one(Input).focus()
        self._show_status()
        self.watch_pack_files()

    def _view_for(self, line: Line) -> LineView:
        view = LineView(None, "")
        self._name_view(view, line.speaker)
        view.set_text(line.text)
        return view

    def _name_view(self, view: LineView, speaker: str) -> None:
        pack = self.playthrough.pack
        if speaker == NARRATOR:
            view.set_speaker("Narrator", "", narration=True)
            return
        character = pack.characters.get(speaker)
        view.set_speaker(pack.speaker_name(speaker), character.color if character else "#c0c0c0", narration=False)

    # -- hot reload -------------------------------------------------------------------------------

    @work(exclusive=True, group="pack-watch")
    async def watch_pack_files(self) -> None:
        async for change in self.playthrough.follow_pack_changes():
            if isinstance(change, LoadedPack):
                for view, line in zip(self.query(LineView), self.playthrough.lines):
                    self._name_view(view, line.speaker)
                self.app.sub_title = change.pack.name
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

    # -- input ------------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.reply is not None:
            self.app.bell()  # one line at a time: Esc stops the one being written
            return
        event.input.clear()
        self.write_reply(event.value)

    def action_continue_story(self) -> None:
        if self.reply is None:
            self.write_reply("")

    def action_stop(self) -> None:
        if self.reply is not None:
            self.reply.cancel()

    @work(exclusive=True, group="reply")
    async def write_reply(self, player_text: str) -> None:
        transcript = self.query_one(Transcript)
        lines_before = len(self.playthrough.lines)
        reply = self.reply = self.playthrough.player_says(player_text)
        for line in self.playthrough.lines[lines_before:]:
            transcript.add(self._view_for(line))
        view = transcript.add(LineView(None, ""))
        self._show_status()
        try:
            async for piece in reply:
                if view.speaker_name is None and reply.speaker is not None:
                    self._name_view(view, reply.speaker)
                view.append(piece)
                transcript.follow()
        finally:
            self.reply = None
        if reply.line is None:
            await view.remove()
        else:
            view.set_text(reply.line.text)
        result = reply.generation_result
        if result is not None and result.tokens_per_second:
            self.tokens_per_second = result.tokens_per_second
        self._show_status()

    def _show_status(self) -> None:
        session = self.playthrough.session
        parts = [
            session.info.description,
            f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else "",
            f"context {len(session.kv_tokens):,}/{session.n_ctx:,}",
            "writing… (Esc stops)" if self.reply is not None else "",
        ]
        self.query_one("#status", Static).update(" · ".join(part for part in parts if part))
