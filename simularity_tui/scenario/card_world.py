"""The lorebook a card names (`extensions.world`), found beside the card, never elsewhere.

SillyTavern links a character to a world-info book by name: `data.extensions.world` is the book's
file name without `.json`, and the books live in the user's `worlds/` folder, beside `characters/`.
So the book is looked for as `<name>.json` beside the card, in `worlds/` beside the card, and in the
`worlds/` folder next to the card's folder (a card in SillyTavern's own `characters/`).

The name comes from a stranger's card: it must be a plain file name (no folder, no `..`, no control
characters), and the file found must really be in the folder it was looked for in (a link leading
out of it is not followed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..text_rules import line_problem

MAX_WORLD_NAME = 200


def world_name(data: dict[str, Any]) -> str | None:
    """The book the card names, or None when it names none."""
    extensions = data.get("extensions")
    name = extensions.get("world") if isinstance(extensions, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be looked up as a book's file name (None when it can)."""
    if len(name) > MAX_WORLD_NAME:
        return f"is longer than {MAX_WORLD_NAME} characters"
    if line_problem(name, what="a book's name"):
        return "has control characters in it"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
        return "is not a plain file name"
    return None


def find_world(card: Path, name: str) -> tuple[Path | None, list[Path]]:
    """The book's file, and the places looked in (for the message when it is not found)."""
    if name_problem(name):
        return None, []
    folder = Path(os.path.abspath(card)).parent
    places = [folder, folder / "worlds", folder.parent / "worlds"]
    for place in places:
        candidate = place / f"{name}.json"
        if _inside(candidate, place):
            return candidate, places
    return None, places


def _inside(candidate: Path, place: Path) -> bool:
    """Whether `candidate` is a regular file really inside `place` (a link may not lead out)."""
    try:
        if not candidate.is_file():
            return False
        return candidate.resolve().parent == place.resolve()
    except OSError:
        return False
