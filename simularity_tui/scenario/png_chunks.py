"""A PNG's chunks, read by the PNG spec (https://www.w3.org/TR/png/, section 5) without decoding
any image data.

Character cards keep their JSON in text chunks, which may come after the image data; in an
animated PNG that is after every frame, and Pillow decodes all of them to get there (20,000 frames:
half a minute). Walking the chunks is cheap: an 8-byte signature, then length, type, data and CRC
per chunk, up to IEND. Compressed text is inflated with a bound, so a small chunk cannot inflate
to gigabytes; the avatar is then decoded from a still PNG of the default image's chunks alone.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_LENGTH = 2**31 - 1  # the spec's bound on a chunk's length
_IEND = b"\0\0\0\0IEND\xaeB`\x82"
_PALETTE = (b"PLTE", b"tRNS")  # the chunks besides IHDR that the default image's pixels depend on


class PngError(ValueError):
    """What is wrong with a PNG, as a phrase that follows its path ("… is a damaged PNG (…)")."""


@dataclass(frozen=True)
class Chunk:
    kind: bytes
    start: int  # where its length field starts
    end: int  # just past its CRC
    data: memoryview


def read_chunks(raw: bytes) -> list[Chunk]:
    """Every chunk from IHDR to IEND, each CRC checked; anything after IEND is ignored."""
    if not raw.startswith(SIGNATURE):
        raise PngError("is not a PNG")
    view = memoryview(raw)
    chunks: list[Chunk] = []
    position = len(SIGNATURE)
    while not chunks or chunks[-1].kind != b"IEND":
        if position + 12 > len(raw):
            raise PngError("is a damaged PNG (it ends before its IEND chunk)")
        length, kind = struct.unpack_from(">I4s", raw, position)
        end = position + 12 + length
        if length > _MAX_LENGTH or end > len(raw) or not kind.isalpha():
            raise PngError(f"is a damaged PNG (a broken chunk at byte {position:,})")
        if zlib.crc32(view[position + 4 : end - 4]) != struct.unpack_from(">I", raw, end - 4)[0]:
            raise PngError(f"is a damaged PNG (the {kind.decode()} chunk at byte {position:,} fails its CRC check)")
        chunks.append(Chunk(kind, position, end, view[position + 8 : end - 4]))
        position = end
    if chunks[0].kind != b"IHDR":
        raise PngError("is a damaged PNG (it does not start with an IHDR chunk)")
    return chunks


def text_chunks(chunks: list[Chunk], keywords: set[str], limit: int) -> dict[str, str]:
    """The text of the first tEXt, zTXt or iTXt chunk of each of `keywords` (any case).

    Text inflated from zTXt or compressed iTXt may be at most `limit` bytes.
    """
    found: dict[str, str] = {}
    for chunk in chunks:
        if chunk.kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword, separator, rest = bytes(chunk.data).partition(b"\0")
        name = keyword.decode("latin-1").lower()
        if separator and name in keywords and name not in found:
            found[name] = _text(chunk.kind, rest, limit)
    return found


def _text(kind: bytes, rest: bytes, limit: int) -> str:
    """A text chunk's text, from what follows its keyword (PNG spec, 11.3.4)."""
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:], limit).decode("latin-1")  # rest[0]: the compression method
    compressed, _method, rest = rest[0:1] == b"\1", rest[1:2], rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    try:
        return (_inflate(text, limit) if compressed else text).decode("utf-8")
    except UnicodeDecodeError:
        raise PngError("is a damaged PNG (an iTXt chunk that is not UTF-8)") from None


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise PngError("is a damaged PNG (a compressed text chunk that does not inflate)") from None
    if len(text) > limit:
        raise PngError(f"holds a text chunk that inflates to more than {limit >> 20} MiB: too large for a card")
    if not inflater.eof:
        raise PngError("is a damaged PNG (a compressed text chunk cut short)")
    return text


def still_image(raw: bytes, chunks: list[Chunk]) -> bytes:
    """A PNG of the default image alone: its header, palette and first run of image data.

    Text, animation control and frame data are left out, so a decoder reads one image and stops.
    """
    kept = [raw[chunk.start : chunk.end] for chunk in chunks[:1]]
    in_data = False
    for chunk in chunks[1:]:
        if chunk.kind == b"IDAT":
            in_data = True
            kept.append(raw[chunk.start : chunk.end])
        elif in_data:
            break  # image data must be consecutive: what follows is frames and text
        elif chunk.kind in _PALETTE:
            kept.append(raw[chunk.start : chunk.end])
    return SIGNATURE + b"".join(kept) + _IEND
