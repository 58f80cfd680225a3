"""What tests do between turns, as the screen does in idle time: write the summary that is due."""

from __future__ import annotations

from simularity_tui.story import Game


async def remembered(game: Game) -> bool:
    """Write the summary the game has due, if any (story/remembering.py); whether one was kept."""
    remembering = game.remember()
    return remembering is not None and await remembering.run()
