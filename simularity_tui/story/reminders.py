"""Reminders: a text the model must read near the end of the prompt, kept there without splicing.

A card's post-history instructions belong after the story, yet the prompt may only grow at its end
between context shifts (the KV cache keeps the common prefix; a text moved to the end each turn
would make every turn re-read everything after its old place). So a reminder is appended in a new
line's open part, as lore notes are (after the notes, before the stage line), whenever its last
copy is REMIND_EVERY or more lines back, or has left the window: the model always has one among
the last few lines it reads, and the prompt still only grows at its end. Each line records the
reminders it carried (`Line.reminders`), so what it read is known after a save and a reload.

Built for any such text: the post-history instructions now, an author's note later. How a
reminder reads in the prompt is writing.py's (`reminder_text`), as for every other text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..scenario.macros import expand
from ..scenario.schema import Pack
from .tree import Line

# Lines between two copies. Small enough that the reminder stays among the last lines the model
# reads (the tail weighs most in what it writes next), large enough that most lines carry none.
REMIND_EVERY = 4
POST_HISTORY = "post-history"


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


def sole_character(pack: Pack) -> str | None:
    """The one character who is not the player, when there is exactly one: what a card's `{{char}}`
    means in texts that belong to no character (its scenario, its instructions)."""
    others = [character.name for character in pack.characters.values() if not character.player]
    return others[0] if len(others) == 1 else None


def due(reminders: Sequence[Reminder], lines: Sequence[Line], window_start: int) -> tuple[Reminder, ...]:
    """The reminders the next line must carry: those never carried, carried REMIND_EVERY or more
    lines back, or carried only by lines the model no longer reads (before `window_start`, an index
    into `lines`)."""
    return tuple(r for r in reminders if _last_copy(r.id, lines) < max(window_start, len(lines) - REMIND_EVERY + 1))


def _last_copy(reminder_id: str, lines: Sequence[Line]) -> int:
    """The index of the last line that carried the reminder, or -1."""
    for index in range(len(lines) - 1, -1, -1):
        if reminder_id in lines[index].reminders:
            return index
    return -1
