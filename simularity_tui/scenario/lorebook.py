"""A lorebook as read from either source, before mapping: its entries and its book-level settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from .world_entry import WorldEntry


@dataclass(frozen=True)
class BookScan:
    """A card book's own scan settings (a world-info file has none: they are SillyTavern's globals)."""

    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None


@dataclass(frozen=True)
class Lorebook:
    name: str  # how the book is known: a world file's name without .json, a card book's `name`
    entries: list[WorldEntry]
    scan: BookScan = BookScan()
    skipped: int = 0  # entries with no content (SillyTavern skips them too) or not objects at all
    notes: list[str] = field(default_factory=list)  # what the reader noticed, for the import's output
