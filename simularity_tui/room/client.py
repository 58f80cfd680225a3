"""A player's end of a room's socket: say hello with the key, then read the room's messages and send
what the player does. Used by the player's screen (ui/room_screen.py)."""

from __future__ import annotations

import asyncio
import contextlib

from .protocol import MAX_ROOM_MESSAGE, Message, encode, read_message


class RoomConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, socket: str, key: str) -> RoomConnection:
        """Connect and say who this is; OSError when the room is not there."""
        reader, writer = await asyncio.open_unix_connection(socket, limit=MAX_ROOM_MESSAGE)
        connection = cls(reader, writer)
        await connection.send({"t": "hello", "key": key})
        return connection

    async def receive(self) -> Message | None:
        """The room's next message; None once it has closed the connection."""
        return await read_message(self._reader)

    async def send(self, message: Message) -> None:
        self._writer.write(encode(message))
        await self._writer.drain()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()
