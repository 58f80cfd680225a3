"""What tests do between turns, as the screen does in idle time: write the summary that is due."""

from __future__ import annotations

from simularity_tui.story import Game


async def summarised(game: Game) -> bool:
    """Write the summary the game has due, if any (story/idle_work.py), and keep it as the next
    idle time would one written aside; whether one was kept."""
    idle = game.idle_work()
    changed = idle is not None and await idle.run()
    return game.keep_waiting_summary() or changed
