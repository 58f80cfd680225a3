"""The TOML files an import writes lore into: their names, their header, and how they are filled.

Imported lore has files of its own (`lore/<book>-001.toml`, …), each well under the 1 MiB a pack's
file may hold, so a book of thousands of entries fits and an author's own files are never
rewritten. Each starts with MARKER: a later import of the same book may rewrite such a file (and
only such a file), replacing the entries that came from that book.
"""

from __future__ import annotations

from ..text_rules import one_line
from .import_text import slug

MARKER = "# simularity: imported lore"
FILE_BUDGET = 768 << 10  # bytes of TOML per written file: well under the loader's 1 MiB a file


def header(what: str, command: str, *, again: bool = True) -> str:
    """The comment at the top of an imported lore file; `what` names the book (one line is made of it).
    `again`: the book can be imported again (`simularity import-lorebook`), replacing what it brought."""
    first = f"{MARKER}: {one_line(what)[:200]}, by `simularity {command}`.\n"
    if not again:
        return first
    return (
        first + "# Importing the book again (simularity import-lorebook) replaces the entries here that came\n"
        "# from it; move an entry to a file of your own to keep your edits.\n"
    )


def is_imported(text: str) -> bool:
    return text.lstrip("\ufeff").startswith(MARKER)


def file_stem(book: str) -> str:
    """Where a book's lore goes in a pack, without the `-001.toml`."""
    return f"lore/{slug(book) or 'lorebook'}"


def group(texts: list[str], budget: int) -> list[list[str]]:
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
    return [found for found in groups if found]
