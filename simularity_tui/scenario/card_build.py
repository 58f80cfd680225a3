"""Building a pack from a card's data: the pack's TOML tables, and their layout in files.

The card's character and a player character make the cast; the avatar becomes the character's
image; `first_mes` and `alternate_greetings` become episodes; `character_book` entries become lore;
`{{char}}` becomes the character's name and `{{user}}` stays the player's name macro; card data
this format has no place for is kept under `extensions`.

Cards come from strangers, and card_read.py has only checked their types. Here every text loses its
control characters (a card could otherwise write terminal escapes into the pack and onto a screen)
and is cut to the schema's limits; kept data becomes TOML that stays shallow and short-keyed; and
the files stay under the loader's limits on size and count, lore split over files of its own. What
is cleaned or cut is remembered, so the person importing is told.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from ..text_rules import text_problem, without_controls
from .card_read import TEXT_FIELDS, TEXT_LIST_FIELDS
from .macros import expand, normalise
from .schema import (
    MAX_AUTHOR,
    MAX_EPISODES,
    MAX_EXAMPLE_LINES,
    MAX_ID,
    MAX_KEYWORD,
    MAX_KEYWORDS,
    MAX_LORE_ENTRIES,
    MAX_NAME,
    MAX_TAGS,
    MAX_TEXT,
    NARRATOR,
)
from .sources import MAX_INCLUDED_FILES, SCENARIO_FILE

KEPT_DEPTH = 8  # kept card data nested deeper than this is kept as JSON text (TOML headers stay short)
MAX_KEPT_KEY = 128  # kept data with a longer key is kept as JSON text too
MAX_KEPT_BYTES = 256 << 10  # kept card data per character or lore entry, as JSON
FILE_BUDGET = 768 << 10  # bytes of TOML per written file: well under the loader's 1 MiB a file
PLAYER_ID = "user"
PLAYER_NAME = "You"
# The card fields the pack has a place for; the others are kept under the character's `extensions`.
_KNOWN_FIELDS = {"name", *TEXT_FIELDS, *TEXT_LIST_FIELDS, "character_book", "extensions"}
_FIELD_NAMES = {"lore": "a lore entry", "greetings": "a greeting", "mes_example": "an example dialogue"}
_SURROGATE = re.compile("[\ud800-\udfff]")

_Item = TypeVar("_Item")


def build_pack(
    data: dict[str, Any], spec: str, avatar: bytes | None, *, card: Path
) -> tuple[dict[str, bytes], list[str]]:
    """Every file of the pack made from `data` (by its path inside the pack), and the warnings to
    give: what was cleaned or cut on the way."""
    builder = _Builder(data, source=_file_name(card))
    files = builder.files(spec, avatar)
    return files, list(builder.warnings())


def _file_name(path: Path) -> str:
    """The card's file name as one printable line (it is written into the pack)."""
    name = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return without_controls(name, keep_newlines=False).strip() or "card"


class _Builder:
    """The pack's files, made from one card's data; it remembers what it cleaned and cut."""

    def __init__(self, data: dict[str, Any], *, source: str) -> None:
        self.data = data
        self.source = source
        self.cleaned: list[str] = []  # the card fields control characters were removed from
        self.cuts: Counter[str] = Counter()  # what was cut or left out, and how often
        self.fields: dict[str, str] = {}
        self.name = (
            self.line(data["name"], "name", MAX_NAME) or self.line(Path(source).stem, "name", MAX_NAME) or "Character"
        )

    def warnings(self) -> Iterator[str]:
        if self.cleaned:
            fields = ", ".join(dict.fromkeys(self.cleaned))
            yield f"removed control characters (terminal escapes and the like) from the card's {fields}"
        for what, count in self.cuts.items():
            yield what if count == 1 else f"{what} ({count:,} times)"

    def capped(self, items: list[_Item], limit: int, what: str) -> list[_Item]:
        """The first `limit` of the card's `items`, telling of the rest when there are more."""
        if len(items) > limit:
            self.cuts[f"left out {len(items) - limit} of the card's {len(items)} {what}"] += 1
        return items[:limit]

    # -- text --

    def clean(self, value: str, field: str, *, keep_newlines: bool = True) -> str:
        if text_problem(value.replace("\r\n", "\n")):
            self.cleaned.append(field)
        # JSON may escape half a surrogate pair ("\ud800"), which no UTF-8 file can hold.
        return without_controls(_SURROGATE.sub("\ufffd", value), keep_newlines=keep_newlines)

    def line(self, value: str, field: str, limit: int) -> str:
        """A name, a keyword or a tag: one line of printable text, not padded, at most `limit` long."""
        return self.clean(value, field, keep_newlines=False).strip()[:limit].rstrip()

    def text(self, value: str, field: str) -> str:
        """Card text for the pack: clean, `{{char}}` resolved, at most MAX_TEXT long."""
        cleaned = self.clean(value, field)
        # Cut before resolving (a name may be MAX_NAME characters), but not below what can resolve to
        # MAX_TEXT: `{{char}}` is 8 characters and the name may be 1.
        text = expand(normalise(cleaned[: 8 * MAX_TEXT]), user="{{user}}", char=self.name)
        if len(text) > MAX_TEXT:
            what = _FIELD_NAMES.get(field) or f"the card's {field}"
            self.cuts[f"cut {what} to {MAX_TEXT:,} characters"] += 1
        return text[:MAX_TEXT]

    def field(self, key: str) -> str:
        """A text field of the card, made once (it may be used twice)."""
        if key not in self.fields:
            self.fields[key] = self.text(self.data.get(key) or "", key)
        return self.fields[key]

    # -- tables --

    def files(self, spec: str, avatar: bytes | None) -> dict[str, bytes]:
        """Every file of the pack, by its path inside the pack."""
        char_id = _Ids({PLAYER_ID, NARRATOR}).make(self.name, "character")
        sections = {
            "characters": {PLAYER_ID: _player(), char_id: self.character(has_avatar=avatar is not None)},
            "episodes": self.episodes(char_id, has_avatar=avatar is not None),
            "lore": self.lore(),
        }
        pack = self.pack_table(spec, has_avatar=avatar is not None)
        files = {path: text.encode() for path, text in _layout(self, pack, sections).items()}
        if avatar is not None:
            files["art/avatar.png"] = avatar
        return files

    def pack_table(self, spec: str, *, has_avatar: bool) -> dict[str, Any]:
        tags = [tag for tag in (self.line(t, "tags", MAX_KEYWORD) for t in self.data.get("tags") or []) if tag]
        kept_tags = self.capped(tags, MAX_TAGS, "tags")
        instructions = "\n\n".join(
            part for part in (self.field("system_prompt"), self.field("post_history_instructions")) if part
        )
        table: dict[str, Any] = {
            "id": _Ids().make(self.name, "card"),
            "name": self.name,
            "version": self.line(self.data.get("character_version") or "", "character_version", 40) or "1.0.0",
            "author": self.line(self.data.get("creator") or "", "creator", MAX_AUTHOR),
            "description": self.field("creator_notes") or f"Imported from the character card {self.source}.",
            "tags": kept_tags,
            # Rated by all the card's tags, not only the kept ones: a rating tag may come late.
            "content_rating": "mature" if {t.lower() for t in tags} & {"nsfw", "adult", "18+"} else "general",
            "prompt": {
                "scenario": self.field("scenario") or self.field("description") or self.name,
                "instructions": instructions[:MAX_TEXT],
            },
            "extensions": {"card": {"spec": spec, "source": self.source}},
        }
        if has_avatar:
            table["cover"] = "art/avatar.png"
        return table

    def character(self, *, has_avatar: bool) -> dict[str, Any]:
        character: dict[str, Any] = {"name": self.name, "color": "#f2a65a", "description": self.field("description")}
        if personality := self.field("personality"):
            character["personality"] = personality
        if examples := self.examples():
            character["example_lines"] = examples
        if has_avatar:
            character["expressions"] = {"neutral": "art/avatar.png"}
            character["default_expression"] = "neutral"
        extensions = self.kept(self.data.get("extensions"), "extensions")
        unknown = self.kept({k: v for k, v in self.data.items() if k not in _KNOWN_FIELDS}, "other data")
        if unknown:
            extensions["card"] = unknown
        if extensions:
            character["extensions"] = extensions
        return character

    def examples(self) -> list[str]:
        blocks = re.split(r"<START>", self.data.get("mes_example") or "", flags=re.IGNORECASE)
        examples = [text for block in blocks if (text := self.text(block.strip(), "mes_example"))]
        return self.capped(examples, MAX_EXAMPLE_LINES, "example dialogues")

    def episodes(self, char_id: str, *, has_avatar: bool) -> dict[str, Any]:
        greetings = [self.data.get("first_mes") or "", *(self.data.get("alternate_greetings") or [])]
        episodes: dict[str, Any] = {}
        for number, greeting in enumerate(self.capped(greetings, MAX_EPISODES, "greetings"), start=1):
            episode: dict[str, Any] = {"name": "Greeting" if number == 1 else f"Alternate greeting {number - 1}"}
            episode["characters"] = [{"id": char_id, **({"expression": "neutral"} if has_avatar else {})}]
            if (text := self.text(greeting, "greetings")).strip():
                episode["lines"] = [{"speaker": char_id, "text": text}]
            episodes["greeting" if number == 1 else f"greeting-{number}"] = episode
        return episodes

    def lore(self) -> dict[str, Any]:
        book = self.data.get("character_book") or {}
        entries = [e for e in book.get("entries") or [] if isinstance(e, dict) and _has_content(e)]
        if len(entries) > MAX_LORE_ENTRIES:
            dropped = len(entries) - MAX_LORE_ENTRIES
            self.cuts[_left_out(dropped, len(entries), "lore", f"a pack holds at most {MAX_LORE_ENTRIES:,}")] += 1
        ids = _Ids()
        lore: dict[str, Any] = {}
        for number, entry in enumerate(entries[:MAX_LORE_ENTRIES], start=1):
            label = next((v for v in (entry.get("name"), entry.get("comment")) if isinstance(v, str) and v), "")
            lore[ids.make(self.line(label, "lore", MAX_ID), f"entry-{number}")] = self.lore_entry(entry)
        return lore

    def lore_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        keys = entry.get("keys")
        keys = [keys] if isinstance(keys, str) else keys if isinstance(keys, list) else []
        keywords = list(
            dict.fromkeys(k for k in (self.line(k, "lore", MAX_KEYWORD) for k in keys if isinstance(k, str)) if k)
        )
        if len(keywords) > MAX_KEYWORDS:
            self.cuts[f"a lore entry lost keywords past its first {MAX_KEYWORDS}"] += 1
        always = entry.get("constant") is True
        extensions = self.kept(entry.get("extensions"), "lore")
        other = {k: v for k, v in entry.items() if k not in ("keys", "content", "constant", "enabled", "extensions")}
        if kept := self.kept(other, "lore"):
            extensions["card"] = kept
        return {
            "keywords": keywords[:MAX_KEYWORDS],
            "content": self.text(entry["content"], "lore"),
            "always": always,
            # An entry with no keys that is not constant never fires in SillyTavern either.
            "enabled": entry.get("enabled", True) is not False and (always or bool(keywords)),
            **({"extensions": extensions} if extensions else {}),
        }

    # -- kept data --

    def kept(self, value: object, field: str) -> dict[str, Any]:
        """Card data kept as TOML can hold it, or nothing when it is too large to keep."""
        if not isinstance(value, dict) or not value:
            return {}
        size = len(json.dumps(value, ensure_ascii=False))
        if size > MAX_KEPT_BYTES:
            self.cuts[f"left out {size >> 10:,} KiB of the card's {field} data: more than a pack keeps"] += 1
            return {}
        table = self.toml_value(value, field, depth=0)
        return table if isinstance(table, dict) else {"json": table}

    def toml_value(self, value: Any, field: str, *, depth: int) -> Any:
        """JSON as TOML can hold it: no nulls, clean text, 64-bit integers, shallow and short-keyed tables."""
        if isinstance(value, dict | list) and (depth >= KEPT_DEPTH or _long_keys(value)):
            return json.dumps(self.plain(value, field), ensure_ascii=False)  # deep data, kept as its JSON text
        if isinstance(value, dict):
            return {
                self.clean(str(key), field): self.toml_value(item, field, depth=depth + 1)
                for key, item in value.items()
                if item is not None
            }
        if isinstance(value, list):
            return [self.toml_value(item, field, depth=depth + 1) for item in value if item is not None]
        if isinstance(value, str):
            return self.clean(value, field)
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)  # TOML integers are 64-bit
        return value

    def plain(self, value: Any, field: str) -> Any:
        """JSON data with clean text, for keeping as JSON text (its depth is bounded by MAX_CARD_DEPTH)."""
        if isinstance(value, dict):
            return {self.clean(str(k), field): self.plain(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(item, field) for item in value]
        return self.clean(value, field) if isinstance(value, str) else value


def _player() -> dict[str, Any]:
    return {"name": PLAYER_NAME, "player": True, "color": "#8fd3ff", "description": "The player."}


def _has_content(entry: dict[str, Any]) -> bool:
    return isinstance(entry.get("content"), str) and bool(entry["content"].strip())


def _long_keys(value: dict[str, Any] | list[Any]) -> bool:
    return isinstance(value, dict) and any(len(str(key)) > MAX_KEPT_KEY for key in value)


def _left_out(count: int, total: int, section: str, why: str) -> str:
    what = "lore entries" if section == "lore" else section
    return f"left out {count:,} of the {total:,} {what} (the last ones): {why}"


class _Ids:
    """Identifiers made from names, each once: a name met again gets -2, -3, … (in constant time)."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken = set(taken or ())
        self.next: dict[str, int] = {}

    def make(self, text: str, fallback: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-") or fallback
        candidate, number = base, self.next.get(base, 2)
        while candidate in self.taken:
            candidate, number = f"{base}-{number}", number + 1
        self.next[base] = number
        self.taken.add(candidate)
        return candidate


# -- layout in files --


def _layout(builder: _Builder, pack: dict[str, Any], sections: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The pack's TOML files, each at most FILE_BUDGET bytes: the manifest with the cast and the
    episodes when they fit, then files of whole entries (lore/lore-001.toml, …), all included.
    Past MAX_INCLUDED_FILES, the last entries are left out (with a warning)."""
    budget = FILE_BUDGET - 8192  # the manifest's room, less what the include list may take
    head = _fit(pack, budget, builder, "the pack (its description and prompt)")
    room = budget - len(head.encode())
    manifest: list[str] = []
    files: dict[str, str] = {}
    for section, entries in sections.items():
        texts = [
            _fit({section: {key: entry}}, FILE_BUDGET, builder, f"{section}.{key}") for key, entry in entries.items()
        ]
        size = sum(len(text.encode()) + 1 for text in texts)
        if section != "lore" and size <= room:  # lore always has files of its own
            manifest.extend(texts)
            room -= size
            continue
        groups = _group(texts, FILE_BUDGET)
        free = MAX_INCLUDED_FILES - len(files)
        if len(groups) > free:
            kept = sum(len(group) for group in groups[:free])
            why = f"a pack holds at most {MAX_INCLUDED_FILES} files of {FILE_BUDGET >> 10} KiB"
            builder.cuts[_left_out(len(texts) - kept, len(texts), section, why)] += 1
        for number, group in enumerate(groups[:free], start=1):
            files[f"{section}/{section}-{number:03}.toml"] = "\n".join(group)
    if files:
        pack["include"] = list(files)
        head = tomli_w.dumps(pack)
    comment = f"# Imported from {builder.source} ({pack['extensions']['card']['spec']}).\n"
    return {SCENARIO_FILE: comment + "\n".join([head, *manifest]), **files}


def _group(texts: list[str], budget: int) -> list[list[str]]:
    """`texts` in order, in groups of at most `budget` bytes each (a text is never split)."""
    groups: list[list[str]] = [[]]
    used = 0
    for text in texts:
        size = len(text.encode()) + 1
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(text)
        used += size
    return [group for group in groups if group]


def _fit(table: dict[str, Any], budget: int, builder: _Builder, label: str) -> str:
    """`table` as TOML of at most `budget` bytes; when larger, its long texts are cut in proportion.

    Every text is already at most MAX_TEXT long, so only a table of several long texts in multi-byte
    characters (a character's description, personality and examples) gets here.
    """
    text = tomli_w.dumps(table)
    while (size := len(text.encode())) > budget:
        long = [(holder, key) for holder, key in _strings(table) if len(holder[key]) > 100]
        if not long:
            break  # nothing left to cut: the loader will say what is too large
        ratio = budget / size * 0.95
        for holder, key in long:
            holder[key] = holder[key][: int(len(holder[key]) * ratio)]
        builder.cuts[f"shortened the long texts of {label} for its file to stay under 1 MiB"] += 1
        text = tomli_w.dumps(table)
    return text


def _strings(table: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """The container and key (or index) of every string in `table`, however deep."""
    stack: list[Any] = [table]
    while stack:
        container = stack.pop()
        for key, value in container.items() if isinstance(container, dict) else enumerate(container):
            if isinstance(value, str):
                yield container, key
            elif isinstance(value, dict | list):
                stack.append(value)
