"""A scripted player for `bench host`: an SSH client with a terminal emulator, timing what a person sees.

The game's screen is read with pyte, the way a terminal would draw it. The client answers the two
questions the game asks a terminal (device attributes, and whether it may bracket frames with
synchronized-output marks), so that Textual marks where each frame ends: the screen is looked at
only between frames, never half drawn.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh
import pyte

_SYNC_START, _SYNC_END = b"\x1b[?2026h", b"\x1b[?2026l"
_ASKS_SYNC, _SYNC_SUPPORTED = b"\x1b[?2026$p", b"\x1b[?2026;2$y"  # DECRQM: supported, now reset
_ASKS_ATTRIBUTES, _ATTRIBUTES = re.compile(rb"\x1b\[0?c"), b"\x1b[?62;22c"  # DA1: a VT220 with colour
_SPEED = re.compile(r"(\d+(?:\.\d+)?) tok/s")

Predicate = Callable[[list[str]], bool]


@dataclass
class TurnFigures:
    ttft_s: float  # Enter → the first character of the reply on the player's screen
    turn_s: float  # Enter → the game is ready for the next line
    tokens_per_second: float  # as the game's status line reports it


@dataclass
class PlayerFigures:
    name: str
    turns: list[TurnFigures] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(turn, attribute) for turn in self.turns)


class _Screen:
    """pyte's screen, fed by the SSH session; `frame` is set at every completed frame."""

    def __init__(self, columns: int, rows: int) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.frame = asyncio.Event()
        self.frame_at = 0.0
        self._in_frame = False
        self._tail = b""

    def feed(self, data: bytes, at: float) -> list[bytes]:
        """Draw `data`; return the answers the terminal owes the game."""
        self.stream.feed(data)
        seen = self._tail + data
        self._tail = seen[-16:]  # a mark may be split between two reads
        answers = []
        if _ASKS_SYNC in seen:
            answers.append(_SYNC_SUPPORTED)
        if _ASKS_ATTRIBUTES.search(seen):
            answers.append(_ATTRIBUTES)
        start, end = seen.rfind(_SYNC_START), seen.rfind(_SYNC_END)
        if start != end:
            self._in_frame = start > end
        if not self._in_frame:
            self.frame_at = at
            self.frame.set()
        return answers

    def rows(self) -> list[str]:
        return list(self.screen.display)


class SshPlayer:
    """One player's SSH session, driven like a person at a keyboard."""

    def __init__(self, name: str, process: asyncssh.SSHClientProcess[bytes], columns: int, rows: int) -> None:
        self.name = name
        self.process = process
        self.screen = _Screen(columns, rows)
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        port: int,
        name: str,
        key: asyncssh.SSHKey,
        columns: int = 120,
        rows: int = 32,
        command: str | None = None,
    ) -> SshPlayer:
        """Log in; `command`: what to ask the host for (`room NAME`), else the game."""
        conn = await asyncssh.connect(
            "127.0.0.1", port, username=name, client_keys=[key], known_hosts=None, agent_path=None
        )
        process = await conn.create_process(
            command, term_type="xterm-256color", term_size=(columns, rows), encoding=None, stderr=asyncssh.STDOUT
        )
        return cls(name, process, columns, rows)

    async def _read(self) -> None:
        try:
            while data := await self.process.stdout.read(65536):
                for answer in self.screen.feed(data, time.perf_counter()):
                    self.process.stdin.write(answer)
        except (OSError, asyncssh.Error):
            pass
        finally:
            self.closed.set()
            self.screen.frame.set()

    async def wait_for(self, predicate: Predicate, timeout: float = 120.0) -> float:
        """Wait until a frame satisfies `predicate`; the time that frame arrived."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.screen.rows()
            if not self.screen._in_frame and predicate(rows):
                return self.screen.frame_at
            if self.closed.is_set():
                raise RuntimeError(f"{self.name}: the session ended; the screen shows:\n" + "\n".join(rows))
            self.screen.frame.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timed out; the screen shows:\n" + "\n".join(rows))
            try:
                await asyncio.wait_for(self.screen.frame.wait(), timeout=left)
            except TimeoutError:
                pass

    def type(self, text: str) -> None:
        self.process.stdin.write(text.encode("utf-8"))

    async def start_game(self) -> None:
        """From the library: play the highlighted pack, until its opening is on screen."""
        await self.wait_for(lambda rows: any("The Lighthouse at Gull Point" in row for row in rows))
        self.type("\r")
        await self.wait_for(lambda rows: any("Say something as" in row for row in rows) and _idle(rows))

    async def play_turn(self, line: str) -> TurnFigures:
        """Type `line`, press Enter: when does the reply begin on screen, and when is the game ready again."""
        self.type(line)
        await self.wait_for(lambda rows: any(line in row for row in rows))  # the line is in the input box
        before = _status(self.screen.rows())
        started = time.perf_counter()
        self.type("\r")
        first = await self.wait_for(lambda rows: _reply_begun(rows, line))
        # Ready again: idle, and the status moved on (the context grew by the turn; the clock may have).
        done = await self.wait_for(lambda rows: _idle(rows) and _status(rows) != before)
        speed = _SPEED.search(_status(self.screen.rows()))
        return TurnFigures(first - started, done - started, float(speed.group(1)) if speed else 0.0)

    async def join_room(self) -> bool:
        """Wait for the room's screen (the session asked for `room NAME`); whether this player holds a
        character there (else they watch: every character was taken)."""
        await self.wait_for(lambda rows: any("Say something as" in row or "You are watching." in row for row in rows))
        return not any("You are watching." in row for row in self.screen.rows())

    async def say_in_room(self, line: str) -> float:
        """Type `line` and press Enter; when Enter went."""
        self.type(line)
        await self.wait_for(lambda rows: any(line in row for row in rows))
        started = time.perf_counter()
        self.type("\r")
        return started

    async def room_reply_seen(self, line: str) -> float:
        """When the story's reply to `line` began on this screen."""
        return await self.wait_for(lambda rows: room_reply_begun(rows, line))

    async def room_quiet(self) -> None:
        """Until the story has finished writing its line."""
        await self.wait_for(lambda rows: not any("✎ the story" in row for row in rows))

    async def close(self) -> None:
        self.process.close()
        self.process.channel.get_connection().close()
        self._reader.cancel()


def _status(rows: list[str]) -> str:
    return next((row for row in reversed(rows) if " · " in row), "")


def _idle(rows: list[str]) -> bool:
    """The status line says where the game is saved only while no turn is being written."""
    return "saved:" in _status(rows)


def _reply_begun(rows: list[str], line: str) -> bool:
    """Below the player's line in the transcript, something more than the waiting mark "…"."""
    said = [index for index, row in enumerate(rows) if row.strip().endswith(f": {line}")]
    if not said:
        return False
    below = []
    for row in rows[said[-1] + 1 :]:
        if "▔▔▔" in row:  # the top border of the input box: the transcript ends here
            break
        if row.strip():
            below.append(row.strip())
    return any(text != "…" for text in below)


def room_reply_begun(rows: list[str], line: str) -> bool:
    """On a room's screen: below the player's line, the story's reply has some text (the transcript
    ends at the table's line)."""
    said = [index for index, row in enumerate(rows) if row.strip().endswith(f": {line}")]
    if not said:
        return False
    for row in rows[said[-1] + 1 :]:
        if row.strip().startswith("At the table:"):
            return False
        text = row.strip()
        if text and not text.endswith(":"):  # a name alone is the line's head, before its first word
            return True
    return False
