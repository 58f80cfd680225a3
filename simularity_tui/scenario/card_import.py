"""`simularity import-card`: a SillyTavern character card becomes a pack.

Cards (https://github.com/malfoyslastname/character-card-spec-v2, and the V3 spec) are JSON, either
in a .json file or base64 in a PNG text chunk: `chara` for V1/V2, `ccv3` for V3 (which wins when
both are there). The card's character and a player character make the cast; the avatar becomes the
character's image; `first_mes` and `alternate_greetings` become episodes; `character_book` entries
become lore; `{{char}}` becomes the character's name and `{{user}}` stays the player's name macro;
card data this format has no place for is kept under `extensions`.

Cards come from strangers: sizes are capped before anything is decoded, and every malformed part
(PNG, base64, JSON, field types, an image that claims too many pixels) is a `CardError`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from pathlib import Path
from typing import Any

import tomli_w
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..atomic import write_atomic
from ..errors import UserFacingError
from .assets import MAX_IMAGE_SIDE
from .loader import LoadedPack, load_pack
from .macros import expand, normalise
from .schema import NARRATOR

MAX_CARD_BYTES = 32 << 20
MAX_CARD_JSON_BYTES = 8 << 20
PLAYER_ID = "user"
PLAYER_NAME = "You"
_KNOWN_FIELDS = {
    "name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes", "system_prompt",
    "post_history_instructions", "alternate_greetings", "character_book", "tags", "creator", "character_version",
    "extensions",
}  # fmt: skip


class CardError(UserFacingError):
    pass


def import_card(card: Path, out_dir: Path, *, replace: bool = False) -> LoadedPack:
    data, avatar, spec = read_card(card)
    if (out_dir / "scenario.toml").exists() and not replace:
        raise CardError(
            f"{out_dir} already holds a pack", hint="Choose another directory, or pass --force to replace it."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise CardError(f"{out_dir} exists and is not a directory", hint="Choose another output directory.")
    manifest, lore = _pack_tables(data, spec, card.name, has_avatar=avatar is not None)
    out_dir.mkdir(parents=True, exist_ok=True)
    if avatar is not None:
        write_atomic(out_dir / "art" / "avatar.png", avatar)
    if lore:
        manifest["include"] = ["lore.toml"]
        write_atomic(out_dir / "lore.toml", tomli_w.dumps({"lore": lore}))
    write_atomic(out_dir / "scenario.toml", f"# Imported from {card.name} ({spec}).\n" + tomli_w.dumps(manifest))
    return load_pack(out_dir)


# -- reading ------------------------------------------------------------------------------------


def read_card(path: Path) -> tuple[dict[str, Any], bytes | None, str]:
    """The card's data (the V2/V3 `data` object, or a V1 card), its avatar as PNG, and its spec."""
    try:
        size = path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise CardError(f"{path} is {size / 2**20:.0f} MiB; a card may be at most {MAX_CARD_BYTES >> 20} MiB")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CardError(f"{path}: no such file", hint="Give the path of a .png or .json character card.") from None
    except IsADirectoryError:
        raise CardError(f"{path} is a directory", hint="Give the path of a .png or .json character card.") from None
    except OSError as error:
        raise CardError(f"{path}: cannot read it ({error.strerror})") from None
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        card, avatar = _from_png(path, raw)
    elif raw.lstrip()[:1] in (b"{", b"["):
        card, avatar = _json(path, raw, "the file"), None
    else:
        raise CardError(
            f"{path} is not a character card: neither a PNG nor JSON",
            hint="SillyTavern exports cards as PNG images (with the card inside) or as .json files.",
        )
    spec = str(card.get("spec", "")) or "chara_card_v1"
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{path}: a {spec} card needs a 'data' object")
    elif "spec" in card:
        raise CardError(
            f"{path}: unknown card spec '{spec}'", hint="Known: chara_card_v2, chara_card_v3, and V1 cards."
        )
    else:
        data = card
    _check_types(path, data)
    return data, avatar, spec


def _from_png(path: Path, raw: bytes) -> tuple[dict[str, Any], bytes]:
    # A V3 card may carry its assets in the chunk: allow text chunks up to the JSON cap.
    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, MAX_CARD_JSON_BYTES * 2)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, MAX_CARD_JSON_BYTES * 4)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                raise CardError(f"{path}: the card's image is {width}×{height}; at most {MAX_IMAGE_SIDE} a side")
            chunks = dict(getattr(image, "text", {}))
            image.load()
            avatar = io.BytesIO()
            image.convert("RGBA").save(avatar, "PNG")  # the pixels only: the card text stays out of the pack
    except CardError:
        raise
    except Image.DecompressionBombError:
        raise CardError(f"{path}: the card's image claims more pixels than any image may have") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise CardError(f"{path} is a damaged PNG ({str(error)[:200]})") from None
    encoded = chunks.get("ccv3") or chunks.get("chara")
    if not encoded:
        raise CardError(
            f"{path} is a PNG without a character card in it (no 'chara' or 'ccv3' text chunk)",
            hint="Export the character from SillyTavern as a PNG card.",
        )
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"{path}: the card text in the PNG is not valid base64") from None
    chunk = "ccv3" if chunks.get("ccv3") else "chara"
    return _json(path, decoded, f"the '{chunk}' chunk"), avatar.getvalue()


def _json(path: Path, raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > MAX_CARD_JSON_BYTES:
        raise CardError(f"{path}: {where} holds {len(raw) >> 20} MiB of JSON; at most {MAX_CARD_JSON_BYTES >> 20} MiB")
    try:
        card = json.loads(raw.decode("utf-8"))
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
    return card


def _check_types(path: Path, data: dict[str, Any]) -> None:
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CardError(f"{path}: the card has no character name", hint="A card needs at least a 'name'.")
    for key in ("description", "personality", "scenario", "first_mes", "mes_example", "creator_notes", "system_prompt",
                "post_history_instructions", "creator", "character_version"):  # fmt: skip
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CardError(f"{path}: the card's '{key}' should be text, not {type(data[key]).__name__}")
    for key in ("alternate_greetings", "tags"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise CardError(f"{path}: the card's '{key}' should be a list of text")
    book = data.get("character_book")
    if book is not None and not (isinstance(book, dict) and isinstance(book.get("entries", []), list)):
        raise CardError(f"{path}: the card's 'character_book' should be an object with a list of 'entries'")


# -- building -----------------------------------------------------------------------------------


def _pack_tables(data: dict[str, Any], spec: str, source: str, *, has_avatar: bool) -> tuple[dict, dict]:
    name = data["name"].strip()[:120]
    char_id = _identifier(name, taken={PLAYER_ID, NARRATOR}, fallback="character")

    def text(key: str) -> str:
        return _resolve(data.get(key) or "", name)

    character: dict[str, Any] = {"name": name, "color": "#f2a65a", "description": text("description")}
    if text("personality"):
        character["personality"] = text("personality")
    examples = _example_lines(text("mes_example"))
    if examples:
        character["example_lines"] = examples
    if has_avatar:
        character["expressions"] = {"neutral": "art/avatar.png"}
        character["default_expression"] = "neutral"
    extensions = _toml_value({**(data.get("extensions") or {})}) if isinstance(data.get("extensions"), dict) else {}
    unknown = {key: value for key, value in data.items() if key not in _KNOWN_FIELDS}
    if unknown:
        extensions["card"] = _toml_value(unknown)
    if extensions:
        character["extensions"] = extensions

    greetings = [data.get("first_mes") or "", *(data.get("alternate_greetings") or [])]
    episodes: dict[str, Any] = {}
    for number, greeting in enumerate(greetings[:64], start=1):
        episode: dict[str, Any] = {"name": "Greeting" if number == 1 else f"Alternate greeting {number - 1}"}
        episode["characters"] = [{"id": char_id, **({"expression": "neutral"} if has_avatar else {})}]
        if greeting.strip():
            episode["lines"] = [{"speaker": char_id, "text": _resolve(greeting, name)[:4000]}]
        episodes["greeting" if number == 1 else f"greeting-{number}"] = episode

    instructions = "\n\n".join(part for part in (text("system_prompt"), text("post_history_instructions")) if part)
    manifest: dict[str, Any] = {
        "id": _identifier(name, taken=set(), fallback="card"),
        "name": name,
        "version": (str(data.get("character_version") or "").strip() or "1.0.0")[:40],
        "author": str(data.get("creator") or "")[:200],
        "description": text("creator_notes") or f"Imported from the character card {source}.",
        "tags": [tag.strip()[:80] for tag in (data.get("tags") or []) if tag.strip()][:32],
        "content_rating": "mature"
        if {t.lower() for t in data.get("tags") or []} & {"nsfw", "adult", "18+"}
        else "general",
        "prompt": {"scenario": text("scenario") or text("description") or name, "instructions": instructions},
        "characters": {
            PLAYER_ID: {"name": PLAYER_NAME, "player": True, "color": "#8fd3ff", "description": "The player."},
            char_id: character,
        },
        "episodes": episodes,
        "extensions": {"card": {"spec": spec, "source": source}},
    }
    if has_avatar:
        manifest["cover"] = "art/avatar.png"
    return manifest, _lore(data.get("character_book") or {}, name)


def _lore(book: dict[str, Any], name: str) -> dict[str, Any]:
    lore: dict[str, Any] = {}
    for number, entry in enumerate(book.get("entries") or [], start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not entry["content"].strip():
            continue
        keys = [k.strip()[:80] for k in entry.get("keys") or [] if isinstance(k, str) and k.strip()][:64]
        label = entry.get("name") or entry.get("comment") or f"entry-{number}"
        lid = _identifier(str(label), taken=set(lore), fallback=f"entry-{number}")
        always = entry.get("constant") is True
        kept = {k: v for k, v in entry.items() if k not in ("keys", "content", "constant", "enabled", "extensions")}
        extensions = _toml_value(entry["extensions"]) if isinstance(entry.get("extensions"), dict) else {}
        if kept:
            extensions["card"] = _toml_value(kept)
        lore[lid] = {
            "keywords": keys,
            "content": _resolve(entry["content"], name),
            "always": always,
            # An entry with no keys that is not constant never fires in SillyTavern either.
            "enabled": entry.get("enabled", True) is not False and (always or bool(keys)),
            **({"extensions": extensions} if extensions else {}),
        }
    return lore


def _resolve(text: str, name: str) -> str:
    """`{{char}}` is the card's character; `{{user}}` stays a macro for the player's name."""
    return expand(normalise(text.replace("\r\n", "\n")), user="{{user}}", char=name)


def _example_lines(text: str) -> list[str]:
    blocks = [block.strip() for block in re.split(r"<START>", text, flags=re.IGNORECASE)]
    return [block[:20_000] for block in blocks if block][:50]


def _identifier(text: str, *, taken: set[str], fallback: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or fallback
    if not base[0].isalnum():
        base = fallback
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def _toml_value(value: Any) -> Any:
    """JSON as TOML can hold it: nulls dropped, keys made text."""
    if isinstance(value, dict):
        return {str(key): _toml_value(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_toml_value(item) for item in value if item is not None]
    return value
