"""Remembering: the summary of the evicted lines, written in idle time, never inside a turn.

When the engine has evicted lines no summary covers yet, `Game.remember()` gives a job that writes
their summary. The screen runs it while the player reads and types; the player's next action
cancels it at once (the engine aborts between graph nodes) and the next idle time starts it again,
so a turn never waits for a summary. Scripts and benchmarks run it between turns. A summary that
fails (a model server gone, say) is logged and the lines stay in the prompt, as when a summary comes
back empty; the next idle time tries again. Kept, the summary goes into the pinned block without a
re-read of the lines after it (summary.py, engine/kv_cache.py), and the game autosaves it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..engine import GenerationStream
from ..errors import UserFacingError
from .summary import SummaryRequest

if TYPE_CHECKING:
    from .game import Game

log = logging.getLogger("simularity")


class Remembering:
    """One summary to write: `run()` it, `cancel()` it; `kept` says whether it reached the story."""

    def __init__(self, game: Game, request: SummaryRequest) -> None:
        self._game = game
        self._request = request
        self._head = game.tree.head  # the story it summarises: kept only if still the one in play
        self._generation: GenerationStream | None = None
        self.cancelled = False
        self.kept = False
        self.seconds = 0.0  # how long the model wrote (cancelled or not)

    def cancel(self) -> None:
        self.cancelled = True
        if self._generation is not None:
            self._generation.cancel()

    async def run(self) -> bool:
        """Write the summary and keep it; False when cancelled, failed or empty."""
        if self.cancelled:
            return False
        started = time.perf_counter()
        try:
            self._generation = generation = self._game.session.generate(self._request.prompt, self._request.params)
            async for _piece in generation:
                pass
            result = await generation.result()
        except UserFacingError as error:
            log.warning("no summary this time, the lines stay in the prompt: %s", error.message)
            return False
        finally:
            self.seconds = time.perf_counter() - started
        summary = " ".join(result.text.split())
        if self.cancelled or result.stop_reason == "cancelled" or not summary or self._game.tree.head != self._head:
            return False
        self._game.keep_summary(self._request, summary)
        self.kept = True
        return True
