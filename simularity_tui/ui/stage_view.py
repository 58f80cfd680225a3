"""The stage on screen: the composed stage picture, drawn with the terminal's best graphics.

textual-image draws it with the kitty graphics protocol, sixel, coloured half cells or plain
unicode; `auto` asks the terminal which it supports (before Textual starts: see cli.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Center
from textual.widget import Widget

from .terminal_graphics import image_widget

if TYPE_CHECKING:  # Pillow and textual-image (with numpy) are not needed before a picture shows
    from PIL import Image

    from ..settings import GraphicsMode


class StageView(Widget):
    """Shows one stage picture; `show` swaps it."""

    DEFAULT_CSS = """
    StageView {
        height: 12;
    }
    StageView.hidden {
        display: none;
    }
    StageView Center {
        height: 100%;
    }
    StageView #stage-picture {
        width: auto;
        height: 100%;
    }
    """

    def __init__(self, graphics: GraphicsMode, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.graphics = graphics
        self.picture: Image.Image | None = None
        self.set_class(graphics == "none", "hidden")

    def compose(self) -> ComposeResult:
        if self.graphics != "none":
            with Center():
                yield image_widget(self.graphics)(id="stage-picture")  # type: ignore[call-arg]

    def show(self, picture: Image.Image) -> None:
        self.picture = picture
        if self.graphics != "none":
            self.query_one("#stage-picture").image = picture  # type: ignore[attr-defined]
