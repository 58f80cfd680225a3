"""Reminders: a text the model must read near the end of the prompt, kept there without splicing.

A card's post-history instructions belong after the story, yet the prompt may only grow at its end
between context shifts (the KV cache keeps the common prefix; a text moved to the end each turn
would make every turn re-read everything after its old place). So a reminder is appended in a new
line's open part, as lore notes are (after the notes, before the stage line), whenever its last
copy is REMIND_EVERY or more lines back, or has left the window: the model always has one among
the last few lines it reads, and the prompt still only grows at its end. Each line records the
reminders it carried (`Line.reminders`), so what it read is known after a save and a reload.

Two texts use it: a pack's post-history instructions, and the player's author's note (per save,
changed at any time). A changed note is a new reminder (its id holds a digest of its text), so a
line keeps meaning the note it carried, and the new one comes in with the next line. How a reminder
reads in the prompt is writing.py's (`reminder_text`), as for every other text.

What it costs: a reminder's tokens once every `every` lines (a 30-token note every 4 lines is
about 8 tokens a line), read once each, like any new line: no re-read of what came before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..scenario.macros import expand
from ..scenario.schema import Pack
from .tree import Line

# Lines between two copies. Small enough that the reminder stays among the last lines the model
# reads (the tail weighs most in what it writes next), large enough that most lines carry none.
REMIND_EVERY = 4
POST_HISTORY = "post-history"
AUTHORS_NOTE = "note-"  # an author's note's id: this, then a digest of its text
AUTHORS_NOTE_TAG = "author's note"
DIRECTION = "ooc-"  # a player's out-of-story direction for one line: this, then a digest of its text
DIRECTION_TAG = "direction"
_TAGS = {AUTHORS_NOTE: AUTHORS_NOTE_TAG, DIRECTION: DIRECTION_TAG}


@dataclass(frozen=True)
class Reminder:
    id: str  # what a line records that it carried
    tag: str  # how the model reads it: `[tag: text]`
    text: str


def pack_reminders(pack: Pack) -> list[Reminder]:
    """The reminders a pack asks for: its post-history instructions, if it has any."""
    text = pack.prompt.post_history.strip()
    if not text:
        return []
    return [Reminder(POST_HISTORY, "instructions", expand(text, user=pack.player.name, char=sole_character(pack)))]


def authors_note_id(text: str, kind: str = AUTHORS_NOTE) -> str:
    """The id a line records for carrying the author's note `text` (or, `kind` DIRECTION, the
    player's direction `text`)."""
    return kind + hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def note_reminders(texts: Mapping[str, str]) -> list[Reminder]:
    """The player's notes and directions as reminders, from their ids and texts (a save keeps every
    one a line carried). Only ids that are the digest of their text: a save cannot pass a text off
    as another reminder (the pack's instructions) or as another note."""
    return [
        Reminder(rid, tag, text)
        for rid, text in texts.items()
        for kind, tag in _TAGS.items()
        if rid == authors_note_id(text, kind)
    ]


def sole_character(pack: Pack) -> str | None:
    """The one character who is not the player, when there is exactly one: what a card's `{{char}}`
    means in texts that belong to no character (its scenario, its instructions)."""
    others = [character.name for character in pack.characters.values() if not character.player]
    return others[0] if len(others) == 1 else None


def due(
    reminders: Sequence[Reminder], lines: Sequence[Line], window_start: int, every: int = REMIND_EVERY
) -> tuple[Reminder, ...]:
    """The reminders the next line must carry: those never carried, carried `every` or more lines
    back, or carried only by lines the model no longer reads (before `window_start`, an index into
    `lines`); and an author's note when another note was carried after its last copy (the player
    went back to an earlier one: the model must not read the other as the newest)."""
    latest = max(window_start, len(lines) - every + 1)
    return tuple(r for r in reminders if _last_copy(r.id, lines) < latest or _outdone(r.id, lines))


def _outdone(reminder_id: str, lines: Sequence[Line]) -> bool:
    """Whether `reminder_id` is an author's note and a line after its last copy carried another."""
    if not reminder_id.startswith(AUTHORS_NOTE):
        return False
    last = _last_copy(reminder_id, lines)
    return any(
        rid.startswith(AUTHORS_NOTE) and rid != reminder_id for line in lines[last + 1 :] for rid in line.reminders
    )


def _last_copy(reminder_id: str, lines: Sequence[Line]) -> int:
    """The index of the last line that carried the reminder, or -1."""
    for index in range(len(lines) - 1, -1, -1):
        if reminder_id in lines[index].reminders:
            return index
    return -1
