"""Building a pack from a card's data: the pack's TOML tables, and their layout in files.

The card's character and a player character make the cast; the avatar (and an expression folder,
V3 assets: card_art.py) becomes the character's images; `first_mes` and `alternate_greetings`
become episodes; `character_book` entries and the world book the card names become lore, mapped
in lorebook_map.py; `{{char}}` becomes the character's name and `{{user}}` stays the player's name
macro; card data this format has no place for is kept under `extensions`. Each fact goes in once:
the description is the character's, never copied into an empty scenario.

Cards come from strangers, and card_read.py has only checked their types. Here every text loses its
control characters and is cut to the schema's limits (import_text.py); and the files stay under
the loader's limits on size and count, lore split over files of its own. What is cleaned or cut is
remembered, so the person importing is told.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ..text_rules import without_controls
from .card_art import CardArt
from .card_book import read_card_book
from .card_read import TEXT_FIELDS, TEXT_LIST_FIELDS
from .import_report import ImportReport, entries
from .import_text import KEPT_DEPTH, Cleaner, Ids
from .lore_files import file_stem, group, header
from .lorebook import BookScan, Lorebook
from .lorebook_map import map_entries
from .schema import (
    MAX_AUTHOR,
    MAX_EPISODES,
    MAX_EXAMPLE_LINES,
    MAX_KEYWORD,
    MAX_LORE_ENTRIES,
    MAX_NAME,
    MAX_TAGS,
    NARRATOR,
)
from .sources import MAX_INCLUDED_FILES, SCENARIO_FILE

__all__ = ["FILE_BUDGET", "KEPT_DEPTH", "build_pack"]

FILE_BUDGET = 768 << 10  # bytes of TOML per written file: well under the loader's 1 MiB a file
PLAYER_ID = "user"
PLAYER_NAME = "You"
# The card fields the pack has a place for; the others are kept under the character's `extensions`.
_KNOWN_FIELDS = {"name", *TEXT_FIELDS, *TEXT_LIST_FIELDS, "character_book", "extensions"}
_BOOK_MAPPED = {"entries", "scan_depth", "token_budget", "recursive_scanning"}
_ORIGINAL = re.compile(r"\{\{\s*original\s*\}\}", re.IGNORECASE)
_CONTEXT = (512, 1 << 20)  # recommended_n_ctx's range in the pack format


def build_pack(
    data: dict[str, Any],
    spec: str,
    avatar: bytes | None,
    *,
    card: Path,
    world: Lorebook | None = None,
    art: CardArt | None = None,
    report: ImportReport | None = None,
) -> tuple[dict[str, bytes], list[str]]:
    """Every file of the pack made from `data` (by its path inside the pack), and the warnings to
    give: what was cleaned or cut on the way. `world` is the book the card names (card_world.py),
    `art` the expressions and scenes found for it (card_art.py); what came in and what did not map
    go to `report`."""
    builder = _Builder(data, source=_file_name(card), world=world, art=art or CardArt(), report=report)
    files = builder.files(spec, avatar)
    return files, list(builder.warnings())


def _file_name(path: Path) -> str:
    """The card's file name as one printable line (it is written into the pack)."""
    name = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return without_controls(name, keep_newlines=False).strip() or "card"


@dataclass
class _Part:
    """Entries of one section, and where they go: the manifest when they fit, or files of their own."""

    section: str
    entries: dict[str, Any]
    stem: str = ""  # their files, without -001.toml ("": characters/characters-001.toml, …)
    header: str = ""  # a comment at the top of each of their files
    own_files: bool = False  # never in the manifest (lore: an import may rewrite its files)


class _Builder(Cleaner):
    """The pack's files, made from one card's data; it remembers what it cleaned and cut."""

    def __init__(
        self,
        data: dict[str, Any],
        *,
        source: str,
        world: Lorebook | None = None,
        art: CardArt | None = None,
        report: ImportReport | None = None,
    ) -> None:
        super().__init__(source="card")
        self.data = data
        self.card_file = source
        self.world = world
        self.art = art or CardArt()
        self.report = report if report is not None else ImportReport()
        self.fields: dict[str, str] = {}
        self.name = (
            self.line(data["name"], "name", MAX_NAME) or self.line(Path(source).stem, "name", MAX_NAME) or "Character"
        )
        self.char = self.name  # `{{char}}` in the card's text is its character
        book = data.get("character_book")
        self.book = read_card_book(book, where=source, name=f"{self.name}'s Lorebook") if book else None

    # -- text --

    def field(self, key: str) -> str:
        """A text field of the card, made once (it may be used twice)."""
        if key not in self.fields:
            self.fields[key] = self.text(self.data.get(key) or "", key)
        return self.fields[key]

    def prompt_field(self, key: str) -> str:
        """A prompt the card may write around SillyTavern's own (`{{original}}`): here there is none."""
        return _ORIGINAL.sub("", self.field(key)).strip()

    # -- tables --

    def files(self, spec: str, avatar: bytes | None) -> dict[str, bytes]:
        """Every file of the pack, by its path inside the pack."""
        char_id = Ids({PLAYER_ID, NARRATOR}).make(self.name, "character")
        character = self.character(has_avatar=avatar is not None)
        parts = [
            _Part("characters", {PLAYER_ID: _player(), char_id: character}),
            _Part("episodes", self.episodes(char_id, character.get("default_expression"))),
            *self.lore_parts(),
        ]
        pack = self.pack_table(spec, has_avatar=avatar is not None)
        if scenes := self.scenes():
            parts.insert(1, _Part("scenes", scenes))
        files = {path: text.encode() for path, text in _layout(self, pack, parts).items()}
        if avatar is not None:
            files["art/avatar.png"] = avatar
        files.update(self.art.files)
        return files

    def pack_table(self, spec: str, *, has_avatar: bool) -> dict[str, Any]:
        tags = [tag for tag in (self.line(t, "tags", MAX_KEYWORD) for t in self.data.get("tags") or []) if tag]
        kept_tags = self.capped(tags, MAX_TAGS, "tags")
        # The card's description is the character's (character()), once: an empty card scenario
        # stays empty rather than repeat it, and post-history instructions keep their own place.
        prompt: dict[str, Any] = {
            "scenario": self.field("scenario"),
            "instructions": self.prompt_field("system_prompt"),
            "post_history": self.prompt_field("post_history_instructions"),
        }
        table: dict[str, Any] = {
            "id": Ids().make(self.name, "card"),
            "name": self.name,
            "version": self.line(self.data.get("character_version") or "", "character_version", 40) or "1.0.0",
            "author": self.line(self.data.get("creator") or "", "creator", MAX_AUTHOR),
            "description": self.field("creator_notes") or f"Imported from the character card {self.card_file}.",
            "tags": kept_tags,
            # Rated by all the card's tags, not only the kept ones: a rating tag may come late.
            "content_rating": "mature" if {t.lower() for t in tags} & {"nsfw", "adult", "18+"} else "general",
            "prompt": {key: value for key, value in prompt.items() if value != "" or key == "scenario"},
            "extensions": {"card": {"spec": spec, "source": self.card_file}},
        }
        if (context := self.context()) is not None:
            table["recommended_n_ctx"] = context
        if self.book is not None and (scan := _lore_scan(self.book.scan)):
            table["lore_scan"] = scan
            self.report.done.append(f"the book's scan settings as [lore_scan]: {_shown(scan)}")
        if has_avatar:
            table["cover"] = "art/avatar.png"
        return table

    def context(self) -> int | None:
        """The context the card asks for: `recommended_n_ctx`, where some cards carry it (the spec has none)."""
        extensions = self.data.get("extensions")
        for holder in (self.data, extensions if isinstance(extensions, dict) else {}):
            value = holder.get("recommended_n_ctx")
            if isinstance(value, int) and not isinstance(value, bool):
                if _CONTEXT[0] <= value <= _CONTEXT[1]:
                    self.report.done.append(f"recommended_n_ctx {value:,} (the default context)")
                    return value
                self.cuts[f"left out recommended_n_ctx {value}: not within {_CONTEXT[0]} to {_CONTEXT[1]:,}"] += 1
        return None

    def character(self, *, has_avatar: bool) -> dict[str, Any]:
        character: dict[str, Any] = {"name": self.name, "color": "#f2a65a", "description": self.field("description")}
        if personality := self.field("personality"):
            character["personality"] = personality
        if examples := self.examples():
            character["example_lines"] = examples
            self.report.done.append(f"{len(examples)} example exchange{'s' * (len(examples) != 1)} from mes_example")
        expressions = {"neutral": "art/avatar.png"} if has_avatar else {}
        expressions.update(self.art.expressions)  # an expression folder's neutral wins over the avatar
        if expressions:
            character["expressions"] = expressions
            character["default_expression"] = "neutral" if "neutral" in expressions else next(iter(expressions))
        extensions = self.kept(self.data.get("extensions"), "extensions")
        other = {k: v for k, v in self.data.items() if k not in _KNOWN_FIELDS}
        book = self.data.get("character_book")
        if isinstance(book, dict) and (rest := {k: v for k, v in book.items() if k not in _BOOK_MAPPED}):
            other["character_book"] = rest  # its name, description, extensions: kept, not read
        if self.art.kept_assets is not None:
            other["assets"] = self.art.kept_assets  # images read at import are not kept twice
        if unknown := self.kept(other, "other data"):
            extensions["card"] = unknown
        if extensions:
            character["extensions"] = extensions
        self.note_unmapped_card()
        return character

    def note_unmapped_card(self) -> None:
        extensions = self.data.get("extensions")
        depth_prompt = extensions.get("depth_prompt") if isinstance(extensions, dict) else None
        if isinstance(depth_prompt, dict) and isinstance(depth_prompt.get("prompt"), str) and depth_prompt["prompt"]:
            self.report.unmapped.append(
                "the card's depth prompt (a character's note at a depth in the chat): kept under the "
                "character's extensions.depth_prompt, not read"
            )
        self.report.unmapped.extend(f"the card's {line}" for line in self.art.unmapped)

    def examples(self) -> list[str]:
        """`mes_example` as example exchanges: one per `<START>` block, `{{char}}` made the character's
        name and `{{user}}` kept, so each line keeps the speaker it names (story/examples.py)."""
        blocks = re.split(r"<START>", self.data.get("mes_example") or "", flags=re.IGNORECASE)
        examples = [text for block in blocks if (text := self.text(block.strip(), "mes_example"))]
        return self.capped(examples, MAX_EXAMPLE_LINES, "example dialogues")

    def scenes(self) -> dict[str, Any]:
        return {sid: {"name": self.line(name, "assets", MAX_NAME) or "Background", "background": path}
                for sid, (name, path) in self.art.scenes.items()}  # fmt: skip

    def episodes(self, char_id: str, expression: str | None) -> dict[str, Any]:
        greetings = [self.data.get("first_mes") or "", *(self.data.get("alternate_greetings") or [])]
        episodes: dict[str, Any] = {}
        for number, greeting in enumerate(self.capped(greetings, MAX_EPISODES, "greetings"), start=1):
            episode: dict[str, Any] = {"name": "Greeting" if number == 1 else f"Alternate greeting {number - 1}"}
            episode["characters"] = [{"id": char_id, **({"expression": expression} if expression else {})}]
            if (text := self.text(greeting, "greetings")).strip():
                episode["lines"] = [{"speaker": char_id, "text": text}]
            episodes["greeting" if number == 1 else f"greeting-{number}"] = episode
        return episodes

    def lore_parts(self) -> list[_Part]:
        """The card's own book and the world book it names, each in files of its own."""
        ids = Ids()
        room = MAX_LORE_ENTRIES
        parts: list[_Part] = []
        world_entries = self.world.entries if self.world is not None else []
        seen = {(each.keys, each.content) for each in world_entries}
        if self.book is not None:
            found = [e for e in self.book.entries if (e.keys, e.content) not in seen]
            if doubles := len(self.book.entries) - len(found):
                self.report.done.append(f"left out {entries(doubles)} of the card's book that the world info holds too")
            found = self.room_for(found, room)
            room -= len(found)
            mapped = map_entries(found, self, ids, where=f"{self.card_file}: the character book's ", numbered=True)
            self.report.done.append(f"{entries(len(mapped.entries), 'lore')} from the card's character book")
            self.report.lore(mapped, "the card's book", "each entry's extensions")
            what = header("the card's character book", "import-card", again=False)
            parts.append(_Part("lore", mapped.entries, "lore/lore", what, True))
        if self.world is not None:
            tag = {"book": self.world.name}
            found = self.room_for(world_entries, room)
            mapped = map_entries(found, self, ids, tag=tag, where=f"the world info {self.world.name}: ")
            self.report.done.append(f"{entries(len(mapped.entries), 'lore')} from the world info {self.world.name!r}")
            self.report.lore(mapped, f"the world info {self.world.name!r}", "each entry's extensions.sillytavern")
            what = f"the world info {self.world.name!r}"
            parts.append(_Part("lore", mapped.entries, file_stem(self.world.name), header(what, "import-card"), True))
        return parts

    def room_for(self, found: list[Any], room: int) -> list[Any]:
        """The first of `found` that the pack has room for, telling of the rest."""
        if len(found) > room:
            why = f"a pack holds at most {MAX_LORE_ENTRIES:,}"
            self.cuts[_left_out(len(found) - room, len(found), "lore", why)] += 1
        return found[: max(room, 0)]


def _lore_scan(scan: BookScan) -> dict[str, Any]:
    """A card book's scan settings as `[lore_scan]` (within its ranges)."""
    table: dict[str, Any] = {}
    if scan.scan_depth is not None:
        table["depth"] = max(0, min(1000, scan.scan_depth))
    if scan.token_budget is not None:
        table["budget"] = max(0, min(1 << 20, scan.token_budget))
    if scan.recursive_scanning is not None:
        table["recursion"] = 3 if scan.recursive_scanning else 0
    return table


def _shown(table: dict[str, Any]) -> str:
    return ", ".join(f"{key} = {value}" for key, value in table.items())


def _player() -> dict[str, Any]:
    return {"name": PLAYER_NAME, "player": True, "color": "#8fd3ff", "description": "The player."}


def _left_out(count: int, total: int, section: str, why: str) -> str:
    what = "lore entries" if section == "lore" else section
    return f"left out {count:,} of the {total:,} {what} (the last ones): {why}"


# -- layout in files --


def _layout(builder: _Builder, pack: dict[str, Any], parts: list[_Part]) -> dict[str, str]:
    """The pack's TOML files, each at most FILE_BUDGET bytes: the manifest with the cast and the
    episodes when they fit, then files of whole entries (lore/lore-001.toml, …), all included.
    Past MAX_INCLUDED_FILES, the last entries are left out (with a warning)."""
    budget = FILE_BUDGET - 8192  # the manifest's room, less what the include list may take
    head = _fit(pack, budget, builder, "the pack (its description and prompt)")
    room = budget - len(head.encode())
    manifest: list[str] = []
    files: dict[str, str] = {}
    for part in parts:
        section = part.section
        texts = [
            _fit({section: {key: entry}}, FILE_BUDGET, builder, f"{section}.{key}")
            for key, entry in part.entries.items()
        ]
        size = sum(len(text.encode()) + 1 for text in texts)
        if not part.own_files and size <= room:
            manifest.extend(texts)
            room -= size
            continue
        groups = group(texts, FILE_BUDGET - len(part.header.encode()))
        free = MAX_INCLUDED_FILES - len(files)
        if len(groups) > free:
            kept = sum(len(found) for found in groups[:free])
            why = f"a pack holds at most {MAX_INCLUDED_FILES} files of {FILE_BUDGET >> 10} KiB"
            builder.cuts[_left_out(len(texts) - kept, len(texts), section, why)] += 1
        stem = part.stem or f"{section}/{section}"
        for number, found in enumerate(groups[:free], start=1):
            files[f"{stem}-{number:03}.toml"] = part.header + "\n".join(found)
    if files:
        pack["include"] = list(files)
        head = tomli_w.dumps(pack)
    comment = f"# Imported from {builder.card_file} ({pack['extensions']['card']['spec']}).\n"
    return {SCENARIO_FILE: comment + "\n".join([head, *manifest]), **files}


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
