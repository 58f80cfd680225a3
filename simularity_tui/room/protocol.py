"""The room's socket: one JSON object per line, each way.

A player's game says `hello` with its key first, then sends what the player does (`say`, `command`,
`typing`); the room sends the story (`welcome`, then `line`, `writing` and `piece` as the model writes,
`story` after an undo), the seats and whose turn it is, who is typing, and notices. JSON is written
ASCII-only, so no byte of a message is a terminal control; the client still shows text through
`printable` (model and player text is untrusted whatever the room did).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

# A player's message: a line of at most 4000 characters fits, each escaped to at most 12 bytes (a
# character outside the Basic Multilingual Plane is two \uXXXX escapes).
MAX_CLIENT_MESSAGE = 64 * 1024
# What the room sends: a late joiner's welcome carries the whole story (a long story in a script
# whose every character is escaped is still far below this).
MAX_ROOM_MESSAGE = 64 * 1024 * 1024

Message = dict[str, Any]


class ProtocolError(Exception):
    """A message that is not one: too long, not JSON, not an object, or without its type."""


def encode(message: Message) -> bytes:
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def decode(raw: bytes) -> Message:
    try:
        message = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
        raise ProtocolError("not a JSON line") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("not a message (an object with its type in `t`)")
    return message


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message; None at the end of the stream. The reader's limit bounds its length."""
    try:
        raw = await reader.readline()
    except (asyncio.LimitOverrunError, ValueError):
        raise ProtocolError("a message too long") from None
    if not raw:
        return None
    if not raw.endswith(b"\n"):
        return None  # cut short: the other side went away mid-message
    return decode(raw)


def text_field(message: Message, key: str, default: str = "") -> str:
    value = message.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"`{key}` is not text")
    return value
