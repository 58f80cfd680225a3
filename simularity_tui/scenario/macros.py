"""`{{user}}` and `{{char}}` in pack text, as SillyTavern cards write them.

`{{user}}` is the player character's name; `{{char}}` is the character the text belongs to (or
who speaks the line). Case and inner spaces do not matter; the card format's older `<USER>` and
`<BOT>` mean the same.
"""

from __future__ import annotations

import re

_MACRO = re.compile(r"\{\{\s*(user|char)\s*\}\}|<(user|bot)>", re.IGNORECASE)


def expand(text: str, *, user: str, char: str | None = None) -> str:
    def replace(match: re.Match[str]) -> str:
        name = (match.group(1) or match.group(2)).lower()
        if name == "user":
            return user
        return char if char is not None else match.group(0)

    return _MACRO.sub(replace, text)


def normalise(text: str) -> str:
    """Write every spelling of the macros as `{{user}}` / `{{char}}`."""
    return _MACRO.sub(lambda m: "{{user}}" if (m.group(1) or m.group(2)).lower() == "user" else "{{char}}", text)
