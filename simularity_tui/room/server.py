"""`simularity room serve`: one shared story on a Unix socket, for the players' games to join.

Each client has a bounded outbox of its own: the room writes into it and goes on, and a client that
stops reading (a stalled terminal, a player's laptop asleep) is dropped once more than `MAX_OUTBOX`
bytes wait for it, never waited for. (One message is always taken, however long: a late joiner's
welcome holds the whole story.) What a client sends is read at most `_MESSAGES_PER_S` a
second (past that, it waits), so a flood costs the room no more than a player typing fast; the
table (table.py) refuses what breaks the room's limits and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path

from ..engine import ModelSession, SamplingParams
from ..engine.heap import settle_long_lived
from ..errors import UserFacingError
from ..scenario import load_pack
from ..story import open_game
from ..story.budgets import Budgets
from ..story.saves import save_path
from .protocol import MAX_CLIENT_MESSAGE, Message, ProtocolError, encode, read_message, text_field
from .rules import Role, RoomLaunch
from .table import Table

log = logging.getLogger("simularity.room")

MAX_OUTBOX = 4 * 1024 * 1024  # bytes a client may leave unread before it is dropped
_HELLO_TIMEOUT_S = 10.0
_MESSAGES_PER_S = 20
_TICK_S = 0.5  # how often grace periods, round turns and votes are looked at
_HOWS = {"say", "do", "story"}


class Client:
    """One connection: who it is, and its outbox."""

    def __init__(self, player: str, role: Role, writer: asyncio.StreamWriter) -> None:
        self.player = player
        self.role = role
        self.writer = writer
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending = 0
        self.dropped = False
        self.pump = asyncio.ensure_future(self._pump())
        # The task writing a parting message (a kick's) before the connection closes: held here, as
        # the loop keeps tasks only weakly.
        self.closing: asyncio.Future[None] | None = None

    def send(self, data: bytes) -> None:
        if self.dropped:
            return
        if self._pending > MAX_OUTBOX:
            log.warning("%s's terminal stopped reading the room: dropped (they can join again)", self.player)
            self.drop()
            return
        self._pending += len(data)
        self._outbox.put_nowait(data)

    def drop(self) -> None:
        self.dropped = True
        self.pump.cancel()
        self.writer.transport.abort()

    async def _pump(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await self._outbox.get()
                self.writer.write(data)
                await self.writer.drain()
                self._pending -= len(data)

    async def flush(self, timeout: float) -> None:
        """What is queued, written (a parting `bye`), then closed."""
        deadline = time.monotonic() + timeout
        while self._pending and not self.dropped and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.drop()


class RoomServer:
    def __init__(self, launch: RoomLaunch) -> None:
        self.launch = launch
        self.table: Table | None = None
        self.clients: set[Client] = set()

    def emit(self, message: Message, to: str | None) -> None:
        data = encode(message)
        for client in list(self.clients):
            if to is None or client.player == to:
                client.send(data)
        if message.get("t") == "bye" and to is not None:
            for client in [c for c in self.clients if c.player == to and c.closing is None]:
                client.closing = asyncio.ensure_future(client.flush(2.0))

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        table = self.table
        assert table is not None
        client: Client | None = None
        try:
            hello = await asyncio.wait_for(read_message(reader), _HELLO_TIMEOUT_S)
            player = self.launch.keys.get(text_field(hello, "key")) if hello and hello.get("t") == "hello" else None
            if player is None or table.role_of(player) is None:
                writer.write(encode({"t": "bye", "text": "This key opens no seat in the room."}))
                await writer.drain()
                return
            role, seat = table.join(player)
            client = Client(player, role, writer)
            self.clients.add(client)
            client.send(encode(table.welcome(player, role, seat)))
            log.info("room %s: %s joined (%s)", self.launch.name, player, role)
            await self._read(reader, client, table)
        except (TimeoutError, ProtocolError, OSError, ConnectionError) as error:
            log.info("room %s: a connection ended: %s", self.launch.name, error or type(error).__name__)
        finally:
            if client is not None:
                self.clients.discard(client)
                client.drop()
                if not any(c.player == client.player for c in self.clients):
                    table.left(client.player)
                log.info("room %s: %s left", self.launch.name, client.player)
            writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, client: Client, table: Table) -> None:
        recent: deque[float] = deque()
        while not client.dropped:
            message = await read_message(reader)
            if message is None:
                return
            now = time.monotonic()
            recent.append(now)
            while recent and now - recent[0] > 1.0:
                recent.popleft()
            if len(recent) > _MESSAGES_PER_S:
                await asyncio.sleep(1.0 / _MESSAGES_PER_S)  # a flood is read at a player's pace
            kind = message["t"]
            if kind == "say":  # a spectator's is refused by the table, which tells them why
                how = text_field(message, "how", "say")
                table.send_line(client.player, text_field(message, "text"), how if how in _HOWS else "say")  # type: ignore[arg-type]
            elif client.role == "spectator":
                continue  # spectators watch: nothing else they send changes the room
            elif kind == "command":
                table.command(client.player, text_field(message, "name"), text_field(message, "arg"))
            elif kind == "typing":
                table.typing(client.player)

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            if self.table is not None:
                try:
                    self.table.tick()
                except Exception:  # logged whole; time keeps passing for the room
                    log.exception("room %s: keeping time failed", self.launch.name)


async def serve_room(launch: RoomLaunch, session: ModelSession, *, sampling: SamplingParams, budgets: Budgets) -> int:
    """Play the room until SIGTERM, SIGINT or SIGHUP; then its save and KV state are written."""
    loaded = load_pack(Path(launch.pack_dir))
    episode = launch.config.episode or None
    if episode is not None and episode not in loaded.pack.episodes:
        raise UserFacingError(f"{launch.pack_dir}: no episode '{episode}' for the room {launch.name}")
    path = save_path(loaded.pack.id, launch.save)
    saved = await open_game(session, loaded, path, episode=episode, sampling=sampling, budgets=budgets)
    settle_long_lived()  # the room's one game, for the room's life (engine/heap.py)
    for warning in saved.warnings:
        log.warning("room %s: %s", launch.name, warning)
    server = RoomServer(launch)
    server.table = Table(saved, launch.name, launch.config, server.emit, seats_file=path.with_suffix(".seats.json"))
    socket = Path(launch.socket)
    socket.unlink(missing_ok=True)
    old_umask = os.umask(0o077)  # the socket is the host user's alone
    try:
        listening = await asyncio.start_unix_server(server.connection, path=str(socket), limit=MAX_CLIENT_MESSAGE)
    finally:
        os.umask(old_umask)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stopping.set)
    tasks = [asyncio.ensure_future(server.table.run()), asyncio.ensure_future(server.tick())]
    print(f"room {launch.name}: ready on {socket}", flush=True)
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    listening.close()
    server.table.closing = True  # the players leaving now keep their seats for the restart
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for client in list(server.clients):
        client.drop()
    try:
        await saved.write_kv()
    finally:
        socket.unlink(missing_ok=True)
    for task in tasks:  # a task that failed says why (the table catches what an item raises)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return 0
