"""Counting tokens where the server cannot: a cloud chat API offers no tokenizer endpoint.

The story plans its prompt in tokens (what fits, what is evicted), so it needs some count. Here a
text is cut into short pieces, each at most 4 characters of a word (about what a model's tokenizer
makes of English: a token is 3 to 4 characters on average) or one other character, so the count
errs on the long side. Each piece's id is its UTF-8 bytes as a number (at most 7 bytes, with the
length on top), so ids need no table: the same text always gives the same ids, and ids give back
the text exactly. The prompt still travels as text; the server's own tokenizer decides what it
reads, and its context is normally far larger than the game's `n_ctx` (a cloud model's 128k).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx

NAME = "estimated (the server has no tokenizer endpoint)"
_PIECE = re.compile(r" ?[^\W\d_]{1,4}| ?\d{1,3}|\s|.", re.DOTALL)
_MOST_BYTES = 7  # an id stays below 2**63, as a save's TOML integers must
_LENGTH_SHIFT = 8 * _MOST_BYTES


class PieceTokenizer:
    """The tokenizer surface of `RemoteTokenizer`, answered here without asking anyone."""

    class _Dialect:
        name = NAME

    dialect = _Dialect()

    def tokenize(self, text: str) -> list[int]:
        return [_id(piece) for match in _PIECE.finditer(text) for piece in _fitting(match.group())]

    async def atokenize(self, client: httpx.AsyncClient, text: str) -> list[int]:
        return self.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(_bytes(token) for token in tokens).decode("utf-8", errors="replace")

    async def adetokenize(self, client: httpx.AsyncClient, tokens: Sequence[int]) -> str:
        return self.detokenize(tokens)


def _fitting(piece: str) -> list[str]:
    """`piece`, split where its UTF-8 bytes would not fit one id (a 4-letter word in a script of
    2-byte letters, with its space, fits; a run of 4-byte characters is split)."""
    parts: list[str] = []
    current = ""
    for char in piece:
        if len((current + char).encode("utf-8")) > _MOST_BYTES:
            parts.append(current)
            current = ""
        current += char
    return [*parts, current] if current else parts


def _id(piece: str) -> int:
    data = piece.encode("utf-8")
    return (len(data) << _LENGTH_SHIFT) | int.from_bytes(data, "big")


def _bytes(token: int) -> bytes:
    length = token >> _LENGTH_SHIFT
    if not 0 < length <= _MOST_BYTES or token < 0:
        return b"\xef\xbf\xbd"  # not one of ours (a save's token from another tokenizer): U+FFFD
    return (token & ((1 << _LENGTH_SHIFT) - 1)).to_bytes(length, "big")
