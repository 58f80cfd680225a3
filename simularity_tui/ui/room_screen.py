"""A shared story on screen: the room's stage and lines as they stream, who plays whom, whose turn
it is and who is typing, and a line to send as one's own character.

The screen is a client of the room's process (room/client.py): it shows what the room sends and
sends what the player types; it holds no model and no story of its own. A connection that drops is
opened again (the room keeps a dropped player's character for a while); a room that says goodbye
(a kick) ends the app with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from ..untrusted_text import printable
from .notify import notify_plain
from .stage_view import StageView
from .transcript import LineView, Transcript

if TYPE_CHECKING:
    from ..room.client import RoomConnection
    from ..room.doors import RoomDoor
    from ..scenario import LoadedPack
    from ..settings import GraphicsMode

log = logging.getLogger("simularity.room")

_RETRY_S = 1.0  # between attempts to reach the room again
_TYPING_SENT_EVERY_S = 2.0
_TYPING_SHOWN_S = 3.0
_COMMANDS = ("continue", "pass", "undo", "regen", "edit", "kick")


class RoomScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+o", "story_goes_on", "Story goes on"),
        Binding("ctrl+n", "pass_turn", "Pass my turn"),
        Binding("ctrl+q", "app.quit", "Leave"),
    ]

    def __init__(self, door: RoomDoor, graphics: GraphicsMode) -> None:
        super().__init__()
        self.door = door
        self.graphics = graphics
        self.connection: RoomConnection | None = None
        self.me: dict[str, Any] = {}
        self.mode = ""
        self.seats: dict[str, Any] = {}
        self._writing: LineView | None = None  # the line the model is writing
        self._writer = ""  # who speaks in it
        self._typing: dict[str, float] = {}  # name -> when they were last seen typing
        self._typed_at = 0.0
        self._seats_at = 0.0  # when the seats (and the turn's time left) were told
        self._away = "Joining the room…"  # the table's line while not in the room
        self._pack: LoadedPack | None = None
        self._stage: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield StageView(self.graphics, id="stage")
        yield Transcript(id="transcript")
        yield Static(id="seats")
        yield Static(id="typing")
        yield Input(placeholder="Joining the room…", id="line", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"Room {self.door.name}"
        self.set_interval(1.0, self._refresh_status)
        self.listen()

    # -- the room's messages ----------------------------------------------------------------------

    @work(exclusive=True, group="room")
    async def listen(self) -> None:
        from ..room.client import RoomConnection
        from ..room.protocol import ProtocolError

        while True:
            try:
                self.connection = await RoomConnection.open(self.door.socket, self.door.key)
            except OSError:
                self._away = "The room is not open: it opens when one of its players joins (trying again…)"
                self._refresh_status()
                await asyncio.sleep(_RETRY_S)
                continue
            try:
                while (message := await self.connection.receive()) is not None:
                    if message["t"] == "bye":
                        self.app.farewell = printable(str(message.get("text", "")))  # type: ignore[attr-defined]
                        self.app.exit()
                        return
                    self._handle(message)
                log.info("room %s: the room closed the connection", self.door.name)
            except (ProtocolError, OSError) as error:
                log.info("room %s: the connection failed: %s", self.door.name, error)
            finally:
                self.connection.close()
                self.connection = None
            self.query_one("#line", Input).disabled = True
            self._away = "Lost the room; joining again…"
            self._refresh_status()
            await asyncio.sleep(_RETRY_S)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "welcome":
            self._welcome(message)
        elif kind == "line":
            self._line(message["line"])
            self._show_stage(message.get("stage"))
        elif kind == "writing":
            self._start_writing(message)
        elif kind == "piece" and self._writing is not None:
            self._writing.append(str(message.get("text", "")))
        elif kind == "unwritten":
            self._drop_writing()
        elif kind == "story":
            self._drop_writing()
            self.query_one(Transcript).replace([self._view(line) for line in message.get("lines", [])])
            self._show_stage(message.get("stage"))
        elif kind == "seats":
            self.seats, self._seats_at = message, time.monotonic()
            self._refresh_status()
        elif kind == "typing":
            if message.get("player") != self.me.get("player"):
                self._typing[str(message.get("name", ""))] = time.monotonic()
                self._refresh_status()
        elif kind == "notice":
            notify_plain(self, str(message.get("text", "")), timeout=6)  # players' words in it: never markup

    def _welcome(self, message: dict[str, Any]) -> None:
        self.me = dict(message.get("you", {}))
        self.mode = str(message.get("mode", ""))
        self.sub_title = printable(f"{message.get('title', '')} · {self.mode}")
        self.seats, self._seats_at = message, time.monotonic()
        self._drop_writing()
        self.query_one(Transcript).replace([self._view(line) for line in message.get("lines", [])])
        if writing := message.get("writing"):
            self._start_writing(writing)
            self._writing.append(str(writing.get("text", "")))  # type: ignore[union-attr]
        line = self.query_one("#line", Input)
        line.disabled = self.me.get("role") == "spectator"
        line.max_length = int(message.get("max_line_chars", 0)) or 0
        if not line.disabled:
            line.focus()
        if note := self.me.get("note"):
            notify_plain(self, str(note), timeout=8)
        self._load_pack(str(message.get("pack_dir", "")))
        self._stage = message.get("stage")
        self._refresh_status()
        self.refresh_bindings()  # what this player may do, now that the room said who they are

    def _view(self, line: dict[str, Any]) -> LineView:
        narration = bool(line.get("narration"))
        view = LineView(None, "")
        speaker = str(line.get("speaker", ""))
        if player := line.get("player"):
            speaker = f"{speaker} ({player})"
        view.set_speaker(speaker, str(line.get("colour") or "#c0c0c0"), narration=narration)
        view.set_text(str(line.get("text", "")))
        return view

    def _line(self, line: dict[str, Any]) -> None:
        view = self._view(line)
        self._drop_writing()  # the line the model was writing: shown now as the story keeps it
        self.query_one(Transcript).add([view])

    def _start_writing(self, message: dict[str, Any]) -> None:
        self._drop_writing()
        self._writer = str(message.get("speaker", ""))
        self._writing = LineView(None, "")
        self._writing.set_speaker(
            self._writer,
            str(message.get("colour") or "#c0c0c0"),
            narration=bool(message.get("narration")),
        )
        self.query_one(Transcript).add([self._writing])
        self._refresh_status()

    def _drop_writing(self) -> None:
        self._writer = ""
        if self._writing is not None:
            self._writing.remove()
            self._writing = None
        self._refresh_status()

    # -- the stage --------------------------------------------------------------------------------

    @work(exclusive=True, group="pack", thread=True)
    def _load_pack(self, pack_dir: str) -> None:
        if self.graphics == "none" or not pack_dir:
            return
        from pathlib import Path

        from ..errors import UserFacingError
        from ..scenario import load_pack

        try:
            self._pack = load_pack(Path(pack_dir))
        except UserFacingError:
            return
        self.app.call_from_thread(self._show_stage, self._stage)

    def _show_stage(self, stage: dict[str, Any] | None) -> None:
        if stage is None:
            return
        self._stage = stage
        if self._pack is not None:
            self._draw_stage(self._pack, stage)

    @work(exclusive=True, group="stage", thread=True)
    def _draw_stage(self, pack: LoadedPack, stage: dict[str, Any]) -> None:
        from ..story.stage import Look, Stage
        from .stage_image import compose_stage

        cast = {str(cid): Look(expression, outfit) for cid, expression, outfit in stage.get("cast", [])}
        picture = compose_stage(pack, Stage(stage.get("scene"), cast))
        self.app.call_from_thread(self.query_one(StageView).show, picture)

    # -- the player's line ------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        """Send the line (or command); it stays in the box if the room did not get it."""
        text = event.value.strip()
        if not text:
            return
        message: dict[str, Any] = {"t": "say", "how": "say", "text": text}
        if text.startswith("/"):
            name, _, argument = text[1:].partition(" ")
            if name in ("do", "say"):
                message = {"t": "say", "how": name, "text": argument}
            elif name in _COMMANDS:
                message = {"t": "command", "name": name, "arg": argument.strip()}
            else:
                notify_plain(self, f"No command /{name}: /do, /continue, /pass, /undo, /regen, /edit TEXT, /kick NAME.")
                return
        if await self._send(message):
            event.input.value = ""

    async def on_input_changed(self, event: Input.Changed) -> None:
        now = time.monotonic()
        if event.value and now - self._typed_at >= _TYPING_SENT_EVERY_S:
            self._typed_at = now
            await self._send({"t": "typing"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Passing is for a round's turn; the story going on, for those who play."""
        if action == "pass_turn":
            return self.mode == "round" and self.me.get("role") == "player"
        if action == "story_goes_on":
            return self.me.get("role") in ("player", "gm")
        return True

    async def action_story_goes_on(self) -> None:
        await self._send({"t": "command", "name": "continue", "arg": ""})

    async def action_pass_turn(self) -> None:
        await self._send({"t": "command", "name": "pass", "arg": ""})

    async def _send(self, message: dict[str, Any]) -> bool:
        """Whether the room got `message` (if not, the player is told: the screen is joining again)."""
        if self.connection is None:
            self.notify("Not in the room right now; joining again…")
            return False
        try:
            await self.connection.send(message)
        except (OSError, RuntimeError):
            self.notify("The room did not get that; joining again…")
            return False
        return True

    # -- the status lines -------------------------------------------------------------------------

    def _refresh_status(self) -> None:
        """The table's line (who plays whom, whose turn, for how long), who is typing, the input's hint."""
        seats = self.seats.get("seats", [])
        parts = [
            f"{seat['name']}: {seat['player']}{'' if seat.get('online') else ' (away)'}"
            for seat in seats
            if isinstance(seat, dict)
        ]
        turn = self.seats.get("turn")
        now = time.monotonic()
        if turn:
            left = self.seats.get("turn_left_s")
            counted = f" ({max(0, int(left - (now - self._seats_at)))} s)" if isinstance(left, int | float) else ""
            parts.append(f"turn: {turn}{counted}")
        if self.seats.get("gm"):
            parts.append(f"gm: {self.seats['gm']}")
        table = "At the table: " + " · ".join(parts) if parts else ""
        self.query_one("#seats", Static).update(Text(printable(self._away if self.connection is None else table)))
        typing = [name for name, at in self._typing.items() if now - at < _TYPING_SHOWN_S]
        said = [f"{', '.join(typing)} {'is' if len(typing) == 1 else 'are'} typing…"] if typing else []
        if self._writer or self._writing is not None:
            said.insert(0, f"✎ the story: {self._writer or 'the narrator'}…")
        self.query_one("#typing", Static).update(Text(printable("   ".join(said))))
        self._refresh_placeholder(turn)

    def _refresh_placeholder(self, turn: object) -> None:
        line = self.query_one("#line", Input)
        role, name = self.me.get("role"), self.me.get("name")
        if self.connection is None or not self.me:
            line.placeholder = "Joining the room…"
        elif role == "spectator":
            line.placeholder = "You are watching."
        elif role == "gm":
            line.placeholder = "Tell the story (/continue, /undo, /regen, /edit TEXT, /kick NAME)"
        elif self.mode == "round" and turn != self.me.get("player"):
            line.placeholder = f"{turn or 'Nobody'}'s turn; yours comes in order."
        elif name:
            line.placeholder = printable(f"Say something as {name} (/do ACTION, Ctrl+O: the story goes on)")
