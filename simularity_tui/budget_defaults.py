"""The story's token budgets by default, which settings.toml's `[game]` shares: in a module of its
own, so that the settings (read right after the game's first frame, and by every command) need not
import the story to know them. story/budgets.py's `Budgets` takes its defaults from here.
"""

from __future__ import annotations

DIRECTION_TOKENS = 24  # a line's stage commands
LINE_TOKENS = 160  # the line itself
# story/reminders.py's REMIND_EVERY (its home), copied so that the settings need not import the
# story: the most lines back the author's note may drift. tests/test_imports.py holds them equal.
REMIND_EVERY = 4
