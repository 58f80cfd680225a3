"""What a steering player adds to the long-session benchmark's scripted story, decided by the game's
own parts rather than by a rule of the benchmark's:

- an author's note, due as the game makes it due (story/reminders.py: when its last copy is
  REMIND_EVERY lines back or has left the window), written as the game writes it;
- lore entries added the way a player adds them while playing (`/lore add`: story/player_lore.py),
  keyed on words of the player's lines, brought in by the lore engine (story/lore.py: scan depth,
  kept while the window holds their note, the lore budget) and written as the game writes them.

The engine's window (what its context still holds after shifts) decides what the model still
reads; every strategy then gets the same texts, so all of them read the same story.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..scenario import bundled_packs_dir, load_pack
from ..story import Line
from ..story.budgets import lore_budget
from ..story.lore import lore_seed, scan_lore
from ..story.player_lore import checked_entry, laid_over
from ..story.reminders import AUTHORS_NOTE_TAG, Reminder, authors_note_id, due
from ..story.writing import note_text, reminder_text
from .script import PLAYER_LINES

AUTHORS_NOTE = "Keep it tense and quiet; Mira hides the truth about the boat."
LORE_KEYS = tuple(
    dict.fromkeys(word.strip("?.!,").lower() for line in PLAYER_LINES for word in line.split() if len(word) > 4)
)
CLOCK = "21:00"  # the scripted story's lines carry no clock the lore engine would read


class Steering:
    """The notes each turn of the scripted story brings in, before the player's line, and the
    story's lines as the lore engine and the reminders read them."""

    def __init__(self, count_tokens: Callable[[str], int], n_ctx: int, *, authors_note: bool, lore: int) -> None:
        pack = load_pack(bundled_packs_dir() / "lighthouse").pack
        entries = {
            f"bench-{key}": checked_entry(
                f"bench-{key}", [key], f"{key.capitalize()}: what the coast folk say of it, in a sentence or two."
            )
            for key in LORE_KEYS[:lore]
        }
        self.pack = laid_over(pack.model_copy(update={"lore": {}}), entries)  # the player's entries alone
        self.note = [Reminder(authors_note_id(AUTHORS_NOTE), AUTHORS_NOTE_TAG, AUTHORS_NOTE)] if authors_note else []
        self.count_tokens = count_tokens
        self.budget = lore_budget(self.pack.lore_scan.budget, n_ctx)
        self.lines: list[Line] = []
        self.notes_brought = 0
        self.notes_repeated = 0  # author's note copies

    def before(self, said: str, window_start: int) -> str:
        """The notes that come before the player's line `said`; `window_start`: the first of the
        story's lines the engine still reads (an index into `lines`)."""
        player = Line("ash", said, CLOCK, "player", ())
        lines = [*self.lines, player]
        scan = scan_lore(
            self.pack,
            lines,
            window_start=window_start,
            count_tokens=self.count_tokens,
            budget=self.budget,
            seed=lore_seed(self.pack, "storm", lines),
        )
        notes = tuple(firing.entry for firing in scan.fired)
        reminders = tuple(reminder.id for reminder in due(self.note, lines, window_start))
        self.lines.append(replace(player, notes=notes, reminders=reminders))
        self.notes_brought += len(notes)
        self.notes_repeated += len(reminders)
        return note_text(self.pack, notes) + reminder_text(self.note, reminders)

    def after(self, reply: str) -> None:
        """The character's reply, for the next scans to read."""
        self.lines.append(Line("mira", reply.strip(), CLOCK, "model", ()))


def first_line_in_view(turns: Sequence[Sequence[int]], pinned: int, held: int) -> int:
    """The index of the first story line the engine still reads whole, two lines a turn (the
    player's, the reply), from the turns' tokens, the pinned block's length and what the KV holds."""
    shed = sum(len(turn) for turn in turns) - (held - pinned)
    if shed <= 1:  # the last turn's closing newline is read with the next turn
        return 0
    start = 0
    while start < len(turns) and shed > 0:
        shed -= len(turns[start])
        start += 1
    return 2 * start
