"""Reading a SillyTavern world-info file (a lorebook) into SillyTavern lore entries, or a `LorebookError`.

SillyTavern keeps each book as `worlds/<Name>.json`: `{"entries": {"0": {...}, "1": {...}}}`, the
book's name being the file's. Each entry's fields are checked here (world_entry.py), so mapping may
rely on their types: malformed JSON is an error at `FILE:line:col`, a bad value one that names the
entry and the field. A lorebook in the character-card spec's shape (a V3 `lorebook_v3` file, or a
bare `character_book`) is read as a card's book is (card_book.py). Books of other programs are
refused with the way to convert them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .card_book import read_card_book
from .card_errors import CardError, LorebookError
from .lorebook import Lorebook
from .untrusted_file import parse_json, read_capped
from .world_entry import DIGITS, UNMODELLED, Fields, WorldEntry, entry_label

MAX_LOREBOOK_BYTES = 32 << 20
MAX_LOREBOOK_DEPTH = 64
_HINT = "Give the path of a SillyTavern world-info .json file (SillyTavern keeps them in data/<user>/worlds/)."
# An entry's fields that map whole; the others are kept under the entry's extensions.sillytavern.
_MAPPED = {
    "key", "keysecondary", "selectiveLogic", "content", "constant", "disable", "order", "sticky", "cooldown",
    "delay", "group", "groupWeight", "scanDepth", "caseSensitive", "matchWholeWords", "excludeRecursion",
    "preventRecursion", "extensions",
}  # fmt: skip
# Kept fields left out when they hold a value that means nothing special (SillyTavern reads the entry
# the same without them): 5,000 entries stay readable.
_HARMLESS: dict[str, tuple[Any, ...]] = {
    **{name: (value, [], {}) for name, value in UNMODELLED.items()},
    "addMemo": (True, False), "depth": (4,), "role": (0,), "outletName": ("",), "selective": (True,),
    "useProbability": (True,), "probability": (100,),
}  # fmt: skip
_OTHER_PROGRAMS = (
    ("lorebookVersion", None, "a NovelAI lorebook"),
    ("kind", "memory", "an Agnai memory book"),
    ("type", "risu", "a RisuAI lorebook"),
)


def read_lorebook(path: Path) -> Lorebook:
    """The book in `path`: a SillyTavern world-info file, or a lorebook in the card spec's shape."""
    try:
        raw = read_capped(path, limit=MAX_LOREBOOK_BYTES, what="a lorebook", hint=_HINT)
        book = parse_json(path, raw, depth=MAX_LOREBOOK_DEPTH)
    except LorebookError:
        raise
    except CardError as error:
        raise LorebookError(error.message, hint=error.hint) from None
    if not isinstance(book, dict):
        raise LorebookError(f"{path}: holds JSON, but not a lorebook object", hint=_HINT)
    for key, value, what in _OTHER_PROGRAMS:
        if key in book and (value is None or book[key] == value):
            raise LorebookError(
                f"{path} is {what}, not a SillyTavern world-info file",
                hint="Import it in SillyTavern (which converts it), then give the world-info file it saves.",
            )
    name = path.stem
    if book.get("spec") == "lorebook_v3" and isinstance(book.get("data"), dict):
        book = book["data"]
    elif isinstance(book.get("data"), dict) and isinstance(book["data"].get("character_book"), dict):
        raise LorebookError(
            f"{path} is a character card, not a lorebook", hint="Import it with `simularity import-card`."
        )
    entries = book.get("entries")
    if isinstance(entries, list) and any(isinstance(e, dict) and "keys" in e for e in entries):
        return read_card_book(book, where=str(path), name=name)  # the card spec's lorebook
    if not isinstance(entries, dict | list):
        raise LorebookError(f"{path}: no 'entries' object: this is not a SillyTavern world-info file", hint=_HINT)
    return _world(path, name, entries)


def _world(path: Path, name: str, entries: dict[str, Any] | list[Any]) -> Lorebook:
    found: list[WorldEntry] = []
    skipped = 0
    for uid, raw in _in_order(entries):
        if not isinstance(raw, dict):
            raise LorebookError(f"{path}: entry {uid[:40]} should be an object, not {type(raw).__name__}")
        content = raw.get("content")
        if content is not None and not isinstance(content, str):
            raise Fields(raw, f"{path}: {entry_label(uid, _title(raw))}").wrong("content", "text")
        if not content or not content.strip():
            skipped += 1  # SillyTavern leaves out an entry with no content too
            continue
        found.append(_entry(path, uid, raw))
    return Lorebook(name=name, entries=found, skipped=skipped)


def _in_order(entries: dict[str, Any] | list[Any]) -> list[tuple[str, Any]]:
    """Entries by uid: SillyTavern walks integer keys in numeric order, then the others as written."""
    if isinstance(entries, list):
        return [(_list_uid(raw, index), raw) for index, raw in enumerate(entries)]
    numeric = sorted((key for key in entries if DIGITS.fullmatch(key)), key=int)
    return [(key, entries[key]) for key in [*numeric, *(key for key in entries if not DIGITS.fullmatch(key))]]


def _list_uid(raw: object, index: int) -> str:
    uid = raw.get("uid") if isinstance(raw, dict) else None
    return str(uid) if isinstance(uid, int | str) and not isinstance(uid, bool) and str(uid) else str(index)


def _title(raw: dict[str, Any]) -> str:
    comment = raw.get("comment")
    return comment if isinstance(comment, str) else ""


def _entry(path: Path, uid: str, raw: dict[str, Any]) -> WorldEntry:
    fields = Fields(raw, f"{path}: {entry_label(uid, _title(raw))}")
    use_probability = fields.flag("useProbability", True)
    kept = {
        key: value
        for key, value in raw.items()
        if key not in _MAPPED and value is not None and not _harmless(key, value)
    }
    if use_probability:
        kept.pop("probability", None)  # mapped
    if fields.position("position", 0) == 4:  # at a depth: where and as whom matter, defaults or not
        kept.update({key: raw[key] for key in ("depth", "role") if raw.get(key) is not None})
    kept.pop("uid", None)  # the mapping writes the entry's uid beside its book (lorebook_map.py)
    selective = fields.flag("selective", True)
    if not selective and raw.get("keysecondary"):
        kept["keysecondary"] = raw["keysecondary"]  # SillyTavern ignores them: kept, not used
    own = raw.get("extensions")
    return WorldEntry(
        uid=uid,
        title=_title(raw),
        keys=fields.texts("key"),
        secondary=fields.texts("keysecondary"),
        selective=selective,
        logic=fields.logic("selectiveLogic"),
        content=raw["content"],
        constant=fields.flag("constant", False),
        enabled=not fields.flag("disable", False),
        order=_or(fields.integer("order"), 100),
        position=fields.position("position", 0),
        depth=fields.integer("depth"),
        role=raw.get("role"),
        outlet=fields.text("outletName"),
        probability=fields.number("probability"),
        use_probability=use_probability,
        sticky=fields.integer("sticky"),
        cooldown=fields.integer("cooldown"),
        delay=fields.integer("delay"),
        group=fields.text("group"),
        group_weight=fields.integer("groupWeight"),
        scan_depth=fields.integer("scanDepth"),
        case_sensitive=fields.optional_flag("caseSensitive"),
        whole_words=fields.optional_flag("matchWholeWords"),
        exclude_recursion=fields.flag("excludeRecursion", False),
        prevent_recursion=fields.flag("preventRecursion", False),
        unmodelled=fields.unmodelled({name: name for name in UNMODELLED}),
        # An entry converted from a card keeps that card's extensions: kept as they were, beside ours.
        kept={**(own if isinstance(own, dict) else {}), "sillytavern": kept},
    )


def _harmless(key: str, value: object) -> bool:
    if key == "characterFilter" and isinstance(value, dict):
        return not value.get("names") and not value.get("tags")
    return any(value == harmless and type(value) is type(harmless) for harmless in _HARMLESS.get(key, ()))


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
