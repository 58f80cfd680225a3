"""Lore the player adds, edits, disables or deletes while playing (an SSH player cannot touch the
pack's files): entries kept in the save, laid over the pack's own by id, and read by the lore
engine exactly as pack lore is. An entry of the pack's that the player edits or deletes is kept as
the player's version (deleted: disabled), so the pack's files stay as they are and a pack reload
keeps what the player did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..errors import UserFacingError
from ..scenario.lore_keys import key_problem
from ..scenario.schema import LoreEntry, Pack
from ..untrusted_text import printable

if TYPE_CHECKING:
    from .game import Game

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HINT = "/lore add ID KEY, KEY: TEXT · /lore edit ID: TEXT · /lore disable ID · /lore enable ID · /lore delete ID"


def checked_entry(lid: str, keywords: list[str], content: str, *, base: LoreEntry | None = None) -> LoreEntry:
    """A lore entry from the player's words, checked as a pack's is; a clear error when it cannot be."""
    if not _ID.fullmatch(lid):
        shown = printable(lid[:64])
        raise UserFacingError(f"'{shown}' cannot be a lore id", hint="Lower-case letters, digits, - and _: the-boat.")
    for key in keywords:
        if problem := key_problem(key):
            raise UserFacingError(f"Lore '{lid}': {problem}", hint=_HINT)
    data = {**(base.model_dump() if base else {}), "content": content}
    if keywords:
        data["keywords"] = keywords
    try:
        return LoreEntry.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserFacingError(f"Lore '{lid}': {where}: {first['msg']}", hint=_HINT) from None


def laid_over(pack: Pack, player_lore: Mapping[str, LoreEntry]) -> Pack:
    """`pack` with the player's entries laid over its own (by id)."""
    if not player_lore:
        return pack
    return pack.model_copy(update={"lore": {**pack.lore, **player_lore}})


def saved_lore(table: Mapping[str, object]) -> tuple[dict[str, LoreEntry], list[str]]:
    """The player's entries from a save, and a warning for each that is not a valid entry (skipped)."""
    kept: dict[str, LoreEntry] = {}
    warnings: list[str] = []
    for lid, raw in table.items():
        try:
            if not _ID.fullmatch(lid):
                raise ValueError("not a lore id")
            entry = LoreEntry.model_validate(raw)
            if problem := next(filter(None, map(key_problem, [*entry.keywords, *entry.secondary])), None):
                raise ValueError(problem)
        except (ValidationError, ValueError) as error:
            why = printable(str(error).splitlines()[0][:200])
            warnings.append(f"your lore entry '{printable(lid[:64])}' was left out: {why}")
            continue
        kept[lid] = entry
    return kept, warnings


def lore_command(game: Game, command: str) -> list[str]:
    """Carry out a lore command (`/lore …` in scripts, the Lore screen's line): what it did, in
    words; a clear error for one that cannot be done. "" lists the player's entries."""
    verb, _, rest = command.strip().partition(" ")
    if not verb:
        listed = [
            f"lore {lid}{'' if entry.enabled else ' (disabled)'}: {', '.join(entry.keywords)}: {entry.content}"
            for lid, entry in game.player_lore.items()
        ]
        return listed or ["no lore of yours"]
    head, _, text = rest.partition(":")
    lid, _, keys = head.strip().partition(" ")
    current = game.pack.lore.get(lid)
    if verb == "add":
        keywords = [key.strip() for key in keys.split(",") if key.strip()]
        if not keywords or not text.strip():
            raise UserFacingError(f"'{printable(command[:80])}' needs keys and a text", hint=_HINT)
        game.set_lore(lid, checked_entry(lid, keywords, text.strip()))
    elif verb in ("edit", "disable", "enable", "delete"):
        if current is None:
            raise UserFacingError(
                f"no lore entry '{printable(lid[:64])}'", hint=f"Entries: {', '.join(game.pack.lore)}"
            )
        if verb == "edit":
            game.set_lore(lid, checked_entry(lid, [], text.strip(), base=current))
        elif verb == "delete" and lid in game.player_lore and lid not in game.written_lore():
            game.set_lore(lid, None)  # the player's own: gone
        else:  # disable, enable, or delete one of the pack's (kept, disabled, as the player's version)
            game.set_lore(lid, current.model_copy(update={"enabled": verb == "enable"}))
    else:
        raise UserFacingError(f"unknown lore command '{printable(verb[:40])}'", hint=_HINT)
    return [f"lore: {verb} {lid}"]
