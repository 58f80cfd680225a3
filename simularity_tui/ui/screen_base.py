"""What every Simularity screen shares: a typed way to reach the app."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from .app import SimularityApp


class SimularityScreen(Screen[None]):
    @property
    def simularity(self) -> SimularityApp:
        return cast("SimularityApp", self.app)
