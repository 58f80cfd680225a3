"""A room's rules over one game: who holds which character, whose turn it is, limits and votes.

Everything players do becomes one item of a queue that a single task works through, so every line
reaches every client in the same order: a player's line, then the model's reply, streamed. The
model never speaks for a character a player holds (`Game.held`), and a player's line is always
their own character's. The room's save is a normal save, written after every line (`SavedGame`),
which can be played solo later; the seats are kept beside it (seats.py), so a restarted room gives
each player their character back.

Events go out through `emit(message, to)`: to everyone (`to` None), or to one player's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UserFacingError
from ..scenario.schema import NARRATOR
from ..story import SavedGame
from ..story.turn import Turn
from ..text_rules import one_line
from .messages import line_message, speaker_fields, stage_message
from .protocol import Message
from .rules import ANY_CHARACTER, Role, RoomConfig, role_in
from .seats import Seat, SeatsKept, load_seats, save_seats

log = logging.getLogger("simularity.room")

Emit = Callable[[Message, "str | None"], None]
How = Literal["say", "do", "story"]
Change = Literal["undo", "regen", "edit"]  # what the gm, or a majority, may do to the story

VOTE_SECONDS = 60.0  # a vote to change the story not carried by then lapses
MAX_QUEUED_PER_PLAYER = 3  # lines one player may have waiting for the model
_IDLE_ROUNDS = 2  # idle work between two items: a summary, then reading ahead
_TYPING_EVERY_S = 2.0  # "bob is typing" goes out at most this often per player
_CHANGES: dict[str, str] = {
    "undo": "undo the last line",
    "regen": "write the last line again",
    "edit": "make the last line read",
}
COMMANDS = "/continue, /pass, /undo, /regen, /edit TEXT, /kick NAME"


@dataclass(frozen=True)
class Item:
    """One thing for the model's queue: a player's line, the story going on, or a change agreed to
    (for the line that was the last when it was asked: `head`)."""

    kind: Literal["line", "continue", "undo", "regen", "edit"]
    player: str
    how: How = "say"
    text: str = ""
    head: int | None = None


@dataclass
class _Vote:
    action: Change
    text: str  # an edit's new text: a vote is for one text
    head: int  # the line it is about: a vote lapses when the story moves on
    until: float
    voters: set[str] = field(default_factory=set)


class Table:
    def __init__(
        self,
        saved: SavedGame,
        name: str,
        config: RoomConfig,
        emit: Emit,
        *,
        seats_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.saved = saved
        self.game = saved.game
        self.name = name
        self.config = config
        self._emit = emit
        self._clock = clock
        self.seats_file = seats_file
        characters = set(self.game.pack.characters)
        self.kept = (
            load_seats(seats_file, config.players, characters, clock(), config.grace_seconds)
            if seats_file is not None
            else SeatsKept()
        )
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._queued: dict[str, int] = {}  # player -> their items waiting
        self._sent: dict[str, deque[float]] = {}  # player -> when they sent their recent lines
        self._typing_at: dict[str, float] = {}
        self._vote: _Vote | None = None
        self.turn: str | None = None  # round mode: whose turn it is
        self.turn_until: float | None = None
        self._spoken = False  # round mode: the player whose turn it is has sent their line
        self.writing: Message | None = None  # the line the model is writing, for a late joiner
        self.busy = False  # an item is being played (a round's clock waits meanwhile)
        self.closing = False  # the room is stopping: players leaving now keep their seats
        self._hold()

    @property
    def seats(self) -> dict[str, Seat]:
        return self.kept.seats

    # -- seats -----------------------------------------------------------------------------------

    def role_of(self, player: str) -> Role | None:
        """How `player` may be in this room: playing, directing, watching, or (None) not at all."""
        return None if player in self.kept.kicked else role_in(self.config, player)

    def join(self, player: str) -> tuple[Role, Seat | None]:
        """`player` connects: their seat (kept from before, or the character the room gives them);
        a player for whom no character is left watches (the welcome says so)."""
        role = self.role_of(player)
        if role is None:
            raise UserFacingError(f"{player} may not join the room {self.name}.")
        if role != "player":
            return role, None
        seat = self.seats.get(player)
        if seat is None:
            character = self._free_character(player)
            if character is None:
                return "spectator", None
            self.kept.silenced.pop(character, None)  # theirs again, if they left it silent
            seat = self.seats[player] = Seat(player, character)
        seat.kept_until = None
        self._seats_changed()
        if self.config.mode == "round" and self.turn is None:
            self._next_turn()
        return role, seat

    def left(self, player: str) -> None:
        """The last client of `player` went: they keep their character for the grace period (and
        whatever the grace, through a stop of the room: they come back when it does)."""
        seat = self.seats.get(player)
        if seat is None or self.closing:
            return
        seat.kept_until = self._clock() + self.config.grace_seconds
        if self.config.grace_seconds == 0:
            self._release(seat)
        self._seats_changed()
        if self.turn == player:
            self._next_turn()

    def kick(self, player: str) -> None:
        self.kept.kicked.add(player)
        seat = self.seats.get(player)
        if seat is not None:
            self._release(seat)
            self._seats_changed()
        if self.turn == player:
            self._next_turn()

    def tick(self) -> None:
        """Time passes: seats past their grace go back, a round's turn runs out (not while the story
        answers), a vote lapses."""
        now = self._clock()
        gone = [s for s in self.seats.values() if s.kept_until is not None and now >= s.kept_until]
        for seat in gone:
            self._release(seat)
        if gone:
            self._seats_changed()
        if self.turn_until is not None and now >= self.turn_until and not (self.busy or self._spoken):
            self._say_all(f"{self.turn}'s time ran out.")
            self._next_turn()
        if self._vote is not None and (now >= self._vote.until or self._vote.head != self.game.tree.head):
            self._say_all(f"The vote to {_CHANGES[self._vote.action]} lapsed.")
            self._vote = None

    def _free_character(self, player: str) -> str | None:
        """The character `player` plays: the one the room gives them, or one left silent for them,
        or the first nobody holds or is promised (the pack's own player character first)."""
        silent_for_others = {c for c, p in self.kept.silenced.items() if p != player}
        taken = set(self.holders()) | silent_for_others
        wanted = self.config.characters.get(player, ANY_CHARACTER)
        if wanted != ANY_CHARACTER:
            return wanted if wanted not in taken else None
        mine = [c for c, p in self.kept.silenced.items() if p == player]
        if mine:
            return mine[0]
        promised = {c for p, c in self.config.characters.items() if c != ANY_CHARACTER and p != player}
        pack = self.game.pack
        order = sorted(pack.characters, key=lambda cid: not pack.characters[cid].player)
        return next((cid for cid in order if cid not in taken and cid not in promised), None)

    def _release(self, seat: Seat) -> None:
        self.seats.pop(seat.player, None)
        name = self.game.pack.speaker_name(seat.character)
        if self.config.on_leave == "silent" and seat.player not in self.kept.kicked:
            self.kept.silenced[seat.character] = seat.player
            self._say_all(f"{seat.player} left; {name} stays silent.")
        else:
            self._say_all(f"{seat.player} left; the story plays {name} again.")

    def holders(self) -> dict[str, str]:
        return {seat.character: seat.player for seat in self.seats.values()}

    def _hold(self) -> None:
        self.game.held = set(self.holders()) | set(self.kept.silenced)

    def _seats_changed(self) -> None:
        self._hold()
        self._save()
        self._emit(self.seats_message(), None)

    def _save(self) -> None:
        if self.seats_file is not None:
            try:
                save_seats(self.seats_file, self.kept)
            except OSError as error:  # a full disk: the room plays on; a restart seats everyone afresh
                log.warning("room %s: cannot keep the seats: %s", self.name, error)

    def seats_message(self) -> Message:
        pack = self.game.pack
        left = None if self.turn_until is None else max(0.0, self.turn_until - self._clock())
        return {
            "t": "seats",
            "seats": [  # in the room's order of players, whoever sat down first
                {"player": s.player, "name": pack.speaker_name(s.character), "online": s.online}
                for s in sorted(self.seats.values(), key=lambda seat: self.config.players.index(seat.player))
            ],
            "turn": self.turn,
            "turn_left_s": left,
            "gm": self.config.gm,
        }

    # -- turns (round mode) ----------------------------------------------------------------------

    def _next_turn(self) -> None:
        """The next player here after the current one, in the room's order (None: nobody is here)."""
        if self.config.mode != "round":
            return
        here = [p for p in self.config.players if p in self.seats and self.seats[p].online]
        self._spoken = False
        if not here:
            self.turn, self.turn_until = None, None
        else:
            after = self.config.players.index(self.turn) + 1 if self.turn in self.config.players else 0
            rotated = self.config.players[after:] + self.config.players[:after]
            self.turn = next(p for p in rotated if p in here)
            self.turn_until = self._clock() + self.config.turn_seconds
        self._emit(self.seats_message(), None)

    # -- what players do -------------------------------------------------------------------------

    def welcome(self, player: str, role: Role, seat: Seat | None) -> Message:
        game = self.game
        watching = role == "spectator" and player in self.config.players
        return {
            "t": "welcome",
            "room": self.name,
            "title": game.pack.name,
            "mode": self.config.mode,
            "pack_dir": str(game.loaded.root),
            "max_line_chars": self.config.max_line_chars,
            "you": {
                "player": player,
                "role": role,
                "name": game.pack.speaker_name(seat.character) if seat else "",
                "note": "Every character is taken: you watch." if watching else "",
            },
            "lines": self._lines(),
            "stage": stage_message(game.stage),
            "writing": self.writing,
            **{key: value for key, value in self.seats_message().items() if key != "t"},
        }

    def _lines(self) -> list[Message]:
        authors = self.kept.authors
        pack = self.game.pack
        return [
            line_message(pack, node.line, authors.get(node.id, ""))
            for node in self.game.tree.path()
            if node.line is not None
        ]

    def typing(self, player: str) -> None:
        seat = self.seats.get(player)
        now = self._clock()
        if seat is None or now - self._typing_at.get(player, float("-inf")) < _TYPING_EVERY_S:
            return
        self._typing_at[player] = now
        self._emit({"t": "typing", "player": player, "name": self.game.pack.speaker_name(seat.character)}, None)

    def send_line(self, player: str, text: str, how: How = "say") -> None:
        """A player's line, checked against the room's limits; refused ones are explained to them alone."""
        seat = self.seats.get(player)
        text = one_line(text)
        if self._directs(player):
            how = "story"  # the gm's lines tell the story
        elif seat is None:
            return self._tell(player, "You are watching: only players hold characters here.")
        elif how == "story":
            how = "do"  # a player tells what their own character does
        if not text:
            return None
        if len(text) > self.config.max_line_chars:
            return self._tell(
                player, f"That line is {len(text)} characters; lines here are at most {self.config.max_line_chars}."
            )
        if not self._in_turn(player) or not self._may_send(player):
            return None
        self._spoken = self.config.mode == "round"
        self._put(Item("line", player, how, text))
        return None

    def _in_turn(self, player: str) -> bool:
        """Round mode: whether `player` may speak now (one line a turn); told why not."""
        if self.config.mode != "round":
            return True
        if self.turn != player:
            self._tell(player, f"It is {self.turn or 'nobody'}'s turn; yours comes in order.")
            return False
        if self._spoken:
            self._tell(player, "You have spoken this turn; the story answers, then the next player speaks.")
            return False
        return True

    def _may_send(self, player: str) -> bool:
        now = self._clock()
        sent = self._sent.setdefault(player, deque())
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        if len(sent) >= self.config.lines_per_minute:
            self._tell(player, f"Slow down: at most {self.config.lines_per_minute} lines a minute here.")
            return False
        if self._queued.get(player, 0) >= MAX_QUEUED_PER_PLAYER:
            self._tell(player, "Your lines are still waiting for the story; send more once it has caught up.")
            return False
        sent.append(now)
        return True

    def command(self, player: str, name: str, argument: str = "") -> None:
        """`/continue`, `/pass`, `/undo`, `/regen`, `/edit TEXT`, `/kick NAME`, as the room's rules allow."""
        if player not in self.seats and not self._directs(player):
            return self._tell(player, "You are watching: only players change the story.")
        if name == "continue":
            if self._in_turn(player) and self._may_send(player):
                self._spoken = self.config.mode == "round"
                self._put(Item("continue", player))
        elif name == "pass":
            if self.turn != player or self._spoken:
                return self._tell(player, "It is not your turn to pass.")
            self._say_all(f"{player} passes.")
            self._next_turn()
        elif name in ("undo", "regen"):
            self._change(player, "undo" if name == "undo" else "regen")
        elif name == "edit":
            text = one_line(argument)
            if not text or len(text) > self.config.max_line_chars:
                return self._tell(
                    player, f"/edit TEXT: the last line's new text, at most {self.config.max_line_chars}."
                )
            self._change(player, "edit", text)
        elif name == "kick":
            self._kick_asked(player, argument)
        else:
            self._tell(player, f"No command /{name} here: {COMMANDS}.")
        return None

    def _kick_asked(self, player: str, whom: str) -> None:
        if not self._directs(player):
            return self._tell(player, "Only the room's gm may ask a player to leave.")
        if whom == player or whom not in self.config.players:
            return self._tell(player, f"No player {whom!r} to ask to leave here.")
        self.kick(whom)
        self._emit({"t": "bye", "text": f"{player} (the gm) asked you to leave the room."}, whom)
        self._say_all(f"{whom} was asked to leave.")
        return None

    def _directs(self, player: str) -> bool:
        return self.config.mode == "gm" and player == self.config.gm

    def _change(self, player: str, action: Change, text: str = "") -> None:
        """Undo, regenerate or edit the last line: the gm's alone, or by a majority of the players
        here; a vote is for one change of one line, and one vote runs at a time."""
        head = self.game.tree.head
        if self.config.changes == "gm":
            if not self._directs(player):
                return self._tell(player, "Only the gm undoes, regenerates or edits lines here.")
            return self._put(Item(action, player, text=text, head=head))
        here = {s.player for s in self.seats.values() if s.online}
        needed = len(here) // 2 + 1
        vote = self._vote
        if vote is not None and (vote.action, vote.text, vote.head) != (action, text, head):
            return self._tell(player, f"A vote to {_CHANGES[vote.action]} is open; agree to it or let it lapse.")
        if vote is None:
            vote = self._vote = _Vote(action, text, head, until=self._clock() + VOTE_SECONDS)
        vote.voters.add(player)
        agreed = len(vote.voters & here)
        if agreed >= needed:
            self._vote = None
            self._put(Item(action, player, text=text, head=head))
            return None
        what = _CHANGES[action] + (f" “{text}”" if text else "")
        again = f"/{action} {text}".rstrip()
        self._say_all(f"{player} asks to {what} ({agreed}/{needed}): {again} to agree.")
        return None

    def _put(self, item: Item) -> None:
        self._queued[item.player] = self._queued.get(item.player, 0) + 1
        self.queue.put_nowait(item)

    def _tell(self, player: str, text: str) -> None:
        self._emit({"t": "notice", "text": text}, player)

    def _say_all(self, text: str) -> None:
        self._emit({"t": "notice", "text": text}, None)

    # -- the model's queue -----------------------------------------------------------------------

    async def run(self) -> None:
        """Work through the queue for ever; between items, the idle work (a summary, reading ahead)
        runs, and is stopped as soon as an item comes. What fails with one item is told to everyone,
        and the room goes on with the next."""
        while True:
            item = await self._next_item()
            self._queued[item.player] = max(0, self._queued.get(item.player, 0) - 1)
            self.busy = True
            try:
                await self._play(item)
                await self.saved.after_turn()
            except UserFacingError as error:  # a model server gone: the line can be sent again
                self._say_all(f"The story could not go on: {error.message}")
            except Exception:  # a bug, a full disk: logged whole, and the room goes on
                log.exception("room %s: playing %s of %s failed", self.name, item.kind, item.player)
                self._say_all("The story could not go on (the room's log says why); try again.")
            finally:
                self.busy = False
            if self.config.mode == "round" and item.player == self.turn and self._spoken:
                self._next_turn()

    async def _next_item(self) -> Item:
        """The next item; while none waits, the idle work due (a summary, reading the story ahead),
        stopped at once when one comes (or when the room stops)."""
        waiting = asyncio.ensure_future(self.queue.get())
        work: asyncio.Future[bool] | None = None
        idle = None
        try:
            for _round in range(_IDLE_ROUNDS):
                idle = None if waiting.done() else self.game.idle_work(read_ahead=True, write_ahead=False)
                if idle is None:
                    break
                work = asyncio.ensure_future(idle.run())
                await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    idle.cancel()
                try:
                    await work
                except Exception:  # idle work is a head start only: the next turn does it if need be
                    log.exception("room %s: idle work failed", self.name)
                    break
            return await waiting
        finally:
            waiting.cancel()
            if work is not None and not work.done() and idle is not None:
                idle.cancel()  # the room stops: no generation may run on while the KV state is written
                with contextlib.suppress(Exception):
                    await asyncio.shield(work)

    async def _play(self, item: Item) -> None:
        game = self.game
        if item.kind in ("undo", "regen", "edit") and item.head != game.tree.head:
            self._say_all(f"The story moved on: the last line was not changed ({item.player} asked).")
            return
        if item.kind == "undo":
            game.undo()
            self._say_all(f"{item.player}: the last line is undone.")
            self._emit_story()
        elif item.kind == "regen":
            await self._stream(game.regenerate(), rewritten=True)
        elif item.kind == "edit":
            game.edit(item.text)
            self._say_all(f"{item.player}: the last line is changed.")
            self._emit_story()
        elif item.kind == "continue":
            await self._stream(game.continue_story())
        else:
            await self._play_line(item)

    async def _play_line(self, item: Item) -> None:
        game = self.game
        before = game.tree.head
        if item.how == "story":  # the gm's narration
            turn = game.act("story", item.text)
        else:
            seat = self.seats.get(item.player)
            if seat is None:  # gone (kicked, or past the grace) while the line waited
                return
            turn = game.act(item.how, item.text, character=seat.character)
        if game.tree.head != before:
            if item.how == "say":
                self.kept.authors[game.tree.head] = item.player
                self._save()
            self._emit_line()
        await self._stream(turn)

    async def _stream(self, turn: Turn, *, rewritten: bool = False) -> None:
        """The model's line as it is written, to everyone; then the line as the story keeps it.
        (The speakers it may choose are fixed as it begins: a player who sits down meanwhile holds
        their character from the next line on.)"""
        if rewritten:
            self._emit_story()  # the line being written again is off every screen until it is
        writing: Message | None = None
        try:
            async for piece in turn:
                if writing is None:
                    writing = {"t": "writing", **speaker_fields(self.game.pack, turn.speaker or NARRATOR), "text": ""}
                    self.writing = writing
                    self._emit(dict(writing), None)
                writing["text"] += piece
                self._emit({"t": "piece", "text": piece}, None)
        finally:
            self.writing = None
        if turn.node_id is not None:
            self._emit_line()
        else:
            self._emit({"t": "unwritten"}, None)
            if rewritten:
                self._emit_story()

    def _emit_line(self) -> None:
        """The story's last line, to everyone."""
        node = self.game.tree.nodes[self.game.tree.head]
        assert node.line is not None
        line = line_message(self.game.pack, node.line, self.kept.authors.get(node.id, ""))
        self._emit({"t": "line", "line": line, "stage": stage_message(self.game.stage)}, None)

    def _emit_story(self) -> None:
        self._emit({"t": "story", "lines": self._lines(), "stage": stage_message(self.game.stage)}, None)
