"""Reading a character card file: its data, its avatar and its spec, or a `CardError`.

Cards come from strangers, so nothing here trusts the file. Only a regular file is opened (a FIFO
would block, a device never end), and only up to MAX_CARD_BYTES. A PNG is walked chunk by chunk
(png_chunks.py) rather than decoded, its card text is base64 of at most MAX_CARD_JSON_BYTES of
JSON, and its avatar is re-encoded from the default image alone, refusing more pixels than any image
may have. The JSON may not nest deeper than MAX_CARD_DEPTH, and the fields the pack is built from
must have the types the spec gives them: every malformed part is a `CardError`, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from . import png_chunks
from .assets import MAX_IMAGE_SIDE
from .card_errors import CardError
from .untrusted_file import json_int, nests_deeper, read_capped

MAX_CARD_BYTES = 32 << 20
MAX_CARD_JSON_BYTES = 8 << 20
MAX_CARD_DEPTH = 64  # nesting of a card's JSON: real cards nest a handful of levels
# The card fields the pack is built from, by the type the spec gives them (card_build.py keeps the
# others under `extensions`).
TEXT_FIELDS = (
    "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes", "system_prompt",
    "post_history_instructions", "creator", "character_version",
)  # fmt: skip
TEXT_LIST_FIELDS = ("alternate_greetings", "tags")
_CARD_HINT = "Give the path of a .png or .json character card."


def read_card(path: Path) -> tuple[dict[str, Any], bytes | None, str]:
    """The card's data (the V2/V3 `data` object, or a V1 card), its avatar as PNG, and its spec."""
    raw = _read_capped(path)
    if raw.startswith(png_chunks.SIGNATURE):
        card, avatar = _from_png(path, raw)
    elif raw.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"["):
        card, avatar = _json(path, raw, "the file"), None
    else:
        raise CardError(
            f"{path} is not a character card: neither a PNG nor JSON",
            hint="SillyTavern exports cards as PNG images (with the card inside) or as .json files.",
        )
    spec = card.get("spec") or "chara_card_v1"
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{path}: a {spec} card needs a 'data' object")
    elif spec == "chara_card_v1":
        data = card
    else:
        raise CardError(
            f"{path}: unknown card spec {str(spec)[:80]!r}", hint="Known: chara_card_v2, chara_card_v3, and V1 cards."
        )
    _check_types(path, data)
    return data, avatar, spec


def _read_capped(path: Path) -> bytes:
    return read_capped(path, limit=MAX_CARD_BYTES, what="a card", hint=_CARD_HINT)


def _from_png(path: Path, raw: bytes) -> tuple[dict[str, Any], bytes]:
    # A V3 card may carry its assets in the chunk: base64 of the largest JSON allowed.
    limit = MAX_CARD_JSON_BYTES * 4 // 3 + 4
    try:
        chunks = png_chunks.read_chunks(raw)
        texts = png_chunks.text_chunks(chunks, {"ccv3", "chara"}, limit)
    except png_chunks.PngError as error:
        raise CardError(f"{path} {error}") from None
    keyword = "ccv3" if texts.get("ccv3") else "chara"
    if not texts.get(keyword):
        raise CardError(
            f"{path} is a PNG without a character card in it (no 'chara' or 'ccv3' text chunk)",
            hint="Export the character from SillyTavern as a PNG card.",
        )
    try:
        decoded = base64.b64decode(texts[keyword], validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"{path}: the card text in the PNG is not valid base64") from None
    card = _json(path, decoded, f"the '{keyword}' chunk")
    return card, _avatar(path, png_chunks.still_image(raw, chunks))


def _avatar(path: Path, still: bytes) -> bytes:
    """The card's default image as a plain PNG: the pixels only, the card text stays out of the pack."""
    try:
        with Image.open(io.BytesIO(still), formats=["PNG"]) as image:
            width, height = image.size
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                raise CardError(f"{path}: the card's image is {width}×{height}; at most {MAX_IMAGE_SIDE} a side")
            image.load()
            avatar = io.BytesIO()
            image.convert("RGBA").save(avatar, "PNG")
    except CardError:
        raise
    except Image.DecompressionBombError:
        raise CardError(f"{path}: the card's image claims more pixels than any image may have") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise CardError(f"{path} is a damaged PNG ({str(error)[:200]})") from None
    return avatar.getvalue()


def _json(path: Path, raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > MAX_CARD_JSON_BYTES:
        raise CardError(f"{path}: {where} holds {len(raw) >> 20} MiB of JSON; at most {MAX_CARD_JSON_BYTES >> 20} MiB")
    try:
        card = json.loads(raw.decode("utf-8-sig"), parse_int=json_int)
    except UnicodeDecodeError:
        raise CardError(f"{path}: {where} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise CardError(
            f"{path}: {where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    except RecursionError:
        raise CardError(f"{path}: {where} nests too deeply to be a card") from None
    if not isinstance(card, dict):
        raise CardError(f"{path}: {where} holds JSON, but not a card object")
    if nests_deeper(card, MAX_CARD_DEPTH):
        raise CardError(f"{path}: {where} nests more than {MAX_CARD_DEPTH} levels deep; no card needs that")
    return card


def _check_types(path: Path, data: dict[str, Any]) -> None:
    """Refuse a field of the wrong type here, so that building the pack may rely on the types."""
    # A name that cleans to nothing (spaces, control characters) gets the card's file name when built.
    if not isinstance(data.get("name"), str):
        raise CardError(f"{path}: the card has no character name", hint="A card needs at least a 'name'.")
    for key in TEXT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CardError(f"{path}: the card's '{key}' should be text, not {type(data[key]).__name__}")
    for key in TEXT_LIST_FIELDS:
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise CardError(f"{path}: the card's '{key}' should be a list of text")
    book = data.get("character_book")
    if book is not None and not (isinstance(book, dict) and isinstance(book.get("entries", []), list)):
        raise CardError(f"{path}: the card's 'character_book' should be an object with a list of 'entries'")
