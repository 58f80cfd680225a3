"""One SillyTavern lore entry, read and checked: the form both lore sources come to before mapping.

A card's `character_book` (card_book.py) and a world-info file (lorebook_read.py) name the same
things differently; SillyTavern itself converts the first into the second, and so do we, so that
lorebook_map.py holds the one mapping to the pack's `LoreEntry`. Field meanings are described in
docs/pack-format.md ("Lorebooks"); `null` means "use the global setting", as it does there.

Values come from strangers: a wrong type or an unknown secondary-key logic (which would change
what the entry means) is a `LorebookError` naming the file, the entry and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .card_errors import LorebookError

# selectiveLogic: how secondary keys combine with a primary match (SillyTavern's numbering).
LOGIC = {0: "and_any", 1: "not_all", 2: "not_any", 3: "and_all"}
# Where SillyTavern puts an entry. 0 and 1 (before / after the character) are both "with the
# story's lore" here; the others have no place in this engine's prompt, and are listed when met.
POSITIONS = {
    0: "before the character",
    1: "after the character",
    2: "at the top of the author's note",
    3: "at the bottom of the author's note",
    4: "at a depth in the chat",
    5: "at the top of the example messages",
    6: "at the bottom of the example messages",
    7: "in an outlet",
}
PLACED = (0, 1)
# SillyTavern entry fields with a meaning this engine does not model, and the value that means
# "nothing special": an entry with another value is listed as not mapped (and kept).
UNMODELLED = {
    "delayUntilRecursion": False,
    "groupOverride": False,
    "useGroupScoring": None,
    "characterFilter": None,
    "triggers": None,
    "ignoreBudget": False,
    "vectorized": False,
    "automationId": "",
    "matchPersonaDescription": False,
    "matchCharacterDescription": False,
    "matchCharacterPersonality": False,
    "matchCharacterDepthPrompt": False,
    "matchScenario": False,
    "matchCreatorNotes": False,
}

DIGITS = re.compile(r"[0-9]{1,18}")  # str.isdigit() takes "²", which int() refuses


@dataclass(frozen=True)
class WorldEntry:
    """A lore entry with SillyTavern's meaning, its texts not yet cleaned (lorebook_map.py does that)."""

    uid: str  # the entry's id in its book, for messages and for finding it again on re-import
    title: str  # the author's name for it (a world entry's comment; a card entry's name or comment)
    keys: tuple[str, ...]
    secondary: tuple[str, ...]
    selective: bool  # off: the secondary keys are not looked at (SillyTavern ignores them)
    logic: int  # a key of LOGIC
    content: str
    constant: bool
    enabled: bool
    order: int
    position: object  # a key of POSITIONS, or the unknown value as found
    depth: int | None  # with position 4: messages back
    role: object  # with position 4: 0 system, 1 user, 2 assistant
    outlet: str  # with position 7
    probability: float | None
    use_probability: bool
    sticky: int | None
    cooldown: int | None
    delay: int | None
    group: str
    group_weight: int | None
    scan_depth: int | None
    case_sensitive: bool | None
    whole_words: bool | None
    exclude_recursion: bool
    prevent_recursion: bool
    unmodelled: dict[str, Any] = field(default_factory=dict)  # UNMODELLED fields with another value
    kept: dict[str, Any] = field(default_factory=dict)  # what goes under the entry's `extensions`, as found


class Fields:
    """Typed reads of one entry's fields; a wrong type is a `LorebookError` naming entry and field."""

    def __init__(self, values: dict[str, Any], where: str) -> None:
        self.values = values
        self.where = where  # "FILE: entry 3 ('Title')"

    def wrong(self, name: str, wanted: str) -> LorebookError:
        value = repr(self.values.get(name))
        shown = value if len(value) <= 60 else value[:57] + "..."
        return LorebookError(f"{self.where}: '{name}' should be {wanted}, not {shown}")

    def text(self, name: str, default: str = "") -> str:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # a comment written as a number: still its name
        raise self.wrong(name, "text")

    def texts(self, name: str) -> tuple[str, ...]:
        """A list of keys; one string is one key (some tools write it so); items not text are an error."""
        value = self.values.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise self.wrong(name, "a list of text")

    def flag(self, name: str, default: bool) -> bool:
        value = self.optional_flag(name)
        return default if value is None else value

    def optional_flag(self, name: str) -> bool | None:
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.wrong(name, "true or false")

    def number(self, name: str) -> float | None:
        """A number, or None for null; JSON numbers written as text ("100") count too."""
        value = self.values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.wrong(name, "a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.wrong(name, "a number")
        return float(value)

    def integer(self, name: str) -> int | None:
        value = self.number(name)
        return None if value is None else round(value)

    def logic(self, name: str) -> int:
        """selectiveLogic: an unknown value is an error, as guessing would change what the entry means."""
        value = self.values.get(name)
        if value is None:
            return 0
        if isinstance(value, str) and DIGITS.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value in LOGIC:
            return value
        known = ", ".join(f"{code} ({LOGIC[code].replace('_', ' ').upper()})" for code in LOGIC)
        raise LorebookError(
            f"{self.where}: '{name}' is {str(value)[:40]!r}, which is not a secondary-key logic",
            hint=f"SillyTavern's values are {known}; fix the entry and import again.",
        )

    def position(self, name: str, default: int) -> object:
        """A position code; an unknown one is returned as found (the entry is still lore; it is listed)."""
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, str) and DIGITS.fullmatch(value.strip()):
            return int(value)
        return value

    def unmodelled(self, names: dict[str, str]) -> dict[str, Any]:
        """The UNMODELLED fields (by SillyTavern's name) whose value is not the harmless default;
        `names` maps SillyTavern's name to this source's name for it."""
        found: dict[str, Any] = {}
        for st_name, own_name in names.items():
            value = self.values.get(own_name)
            if value in (None, "", [], {}, UNMODELLED[st_name]):
                continue
            if st_name == "characterFilter" and isinstance(value, dict):
                if not (value.get("names") or value.get("tags")):
                    continue
            found[st_name] = value
        return found


def entry_label(uid: str, title: str) -> str:
    """How messages name an entry: its uid, and its title when it has one."""
    shown = " ".join(title.split())[:60]
    return f"entry {uid[:40]}" + (f" ({shown!r})" if shown else "")
