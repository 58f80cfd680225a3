"""`simularity import-lorebook FILE PACK_DIR`: a SillyTavern world-info book becomes lore of a pack.

1. read (lorebook_read.py): the book's entries, checked, or an error naming the file's line and
   column, or the entry and the field;
2. map (lorebook_map.py): each entry as a `[lore.<id>]` table, as a card's book is mapped, with
   what has no place here kept under its `extensions.sillytavern` and listed;
3. install (lorebook_install.py): files of the book's own in the pack, added to `include`; the pack
   is loaded after (as `simularity check` does), or left as it was.

Importing a book again replaces what it brought the time before, so nothing is doubled: an entry
knows its book and uid (`extensions.sillytavern.book` and `.uid`). Entries in files the import
wrote are replaced (keeping their ids, which saves may name); an entry of the book the author has
moved into a file of their own is the author's now, and is left alone, its uid not imported again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .card_errors import LorebookError
from .import_report import ImportReport, entries
from .import_text import Cleaner, Ids
from .loader import LoadedPack, load_pack
from .lore_files import file_stem, header
from .lorebook_install import apply, imported_files, plan
from .lorebook_map import map_entries
from .lorebook_read import read_lorebook
from .schema import MAX_LORE_ENTRIES, Pack
from .sources import read_sources


def import_lorebook(book_file: Path, pack_dir: Path, report: ImportReport | None = None) -> LoadedPack:
    """Add the book in `book_file` to the pack at `pack_dir`; what happened goes to `report`."""
    report = report if report is not None else ImportReport()
    book = read_lorebook(book_file)
    if not book.entries:
        raise LorebookError(f"{book_file}: the book has no entries with content", hint="Nothing was imported.")
    loaded = load_pack(pack_dir)  # a pack with problems is fixed first: they are listed
    sources, _ = read_sources(pack_dir)
    pack = loaded.pack
    previous = {lore_id: entry for lore_id, entry in pack.lore.items() if _book_of(entry.extensions) == book.name}
    ours = imported_files(sources)
    replaced = {lore_id for lore_id in previous if sources.origins.get(("lore", lore_id)) in ours}
    moved = {_uid_of(previous[lore_id].extensions) for lore_id in previous if lore_id not in replaced}
    reuse = {_uid_of(previous[lore_id].extensions): lore_id for lore_id in replaced}
    wanted = [entry for entry in book.entries if entry.uid not in moved]
    room = MAX_LORE_ENTRIES - (len(pack.lore) - len(replaced))
    cleaner = Cleaner(char=_sole_character(pack), source="lorebook")
    if len(wanted) > room:
        cleaner.cuts[f"left out the last {len(wanted) - room:,} of the book's entries: a pack holds at most "
                     f"{MAX_LORE_ENTRIES:,} lore entries"] += 1  # fmt: skip
        wanted = wanted[: max(room, 0)]
    ids = Ids({lore_id for lore_id in pack.lore if lore_id not in replaced})
    mapped = map_entries(wanted, cleaner, ids, tag={"book": book.name}, reuse=reuse, where=f"{book_file}: ")
    stem = file_stem(book.name)
    what = f"the world info {book.name!r} ({book_file.name})"
    changes = plan(sources, mapped.entries, replaced, stem, header(what, "import-lorebook"))
    result = apply(pack_dir, changes, book_file)
    report.done.append(f"{entries(len(mapped.entries), 'lore')} from the world info {book.name!r}")
    if replaced:
        report.done.append(f"replaced the {entries(len(replaced))} imported from {book.name!r} before")
    if moved:
        report.done.append(f"left {entries(len(moved))} of {book.name!r} where you moved them (not imported again)")
    if book.skipped:
        report.done.append(f"left out {entries(book.skipped)} with no content (as SillyTavern does)")
    if changes.include:
        report.done.append(f"added {', '.join(changes.include)} to include in scenario.toml")
    report.lore(mapped, f"the world info {book.name!r}", "each entry's extensions.sillytavern")
    report.warnings.extend(cleaner.warnings())
    return result


def _book_of(extensions: dict[str, Any]) -> object:
    tag = extensions.get("sillytavern")
    return tag.get("book") if isinstance(tag, dict) else None


def _uid_of(extensions: dict[str, Any]) -> str:
    tag = extensions.get("sillytavern")
    return str(tag.get("uid")) if isinstance(tag, dict) else ""


def _sole_character(pack: Pack) -> str | None:
    """The name `{{char}}` stands for in the book: the pack's one character besides the player, if one."""
    others = [character.name for character in pack.characters.values() if not character.player]
    return others[0] if len(others) == 1 else None
