"""Asking the terminal what it can draw, once, before Textual takes it, and only when needed.

textual-image asks as it is imported: a sixel query, a kitty graphics query (`\\e_Gi=31,…;AAAA\\e\\\\`)
and the cell size in pixels. With a mode chosen (`--graphics halfcell`, or `[ui] graphics`) the
answer would not be used, and a terminal that does not understand the kitty query shows it (tmux
made it the pane's title). So with a chosen mode the import sees no terminal, and only the modes
that draw pixels (kitty, sixel) ask for the cell size.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.widget import Widget

    from ..settings import GraphicsMode


class _NotATerminal:
    """Standard output as textual-image's import sees it when the mode is chosen: not a terminal."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def prepare_terminal_graphics(mode: GraphicsMode) -> None:
    """Import textual-image: with `auto`, letting it ask the terminal; else without asking.

    With `none` nothing is drawn, so nothing is imported (textual-image brings numpy): a stage
    shown later in another mode imports it then, without asking (`image_widget`)."""
    if mode == "none" and "textual_image.widget" not in sys.modules:
        return
    if mode == "auto" or "textual_image.widget" in sys.modules:
        import textual_image.widget  # noqa: F401 - its import asks the terminal

        return
    _import_without_asking()
    from textual_image._terminal import get_cell_size

    if mode in ("kitty", "sixel"):  # these draw pixels: the real cell size, asked of the terminal
        if hasattr(get_cell_size, "_result"):
            del get_cell_size._result
        get_cell_size()


def image_widget(mode: GraphicsMode) -> type[Widget]:
    """textual-image's widget that draws in `mode` (not `none`); imported here, without asking the
    terminal, when the game started with `none` (Textual has the terminal by now)."""
    if "textual_image.widget" not in sys.modules:
        _import_without_asking()
    from textual_image.widget import HalfcellImage, SixelImage, TGPImage, UnicodeImage
    from textual_image.widget import Image as AutoImage

    widgets: dict[str, type[Widget]] = {
        "auto": AutoImage,
        "kitty": TGPImage,
        "sixel": SixelImage,
        "halfcell": HalfcellImage,
        "unicode": UnicodeImage,
    }
    return widgets[mode]


def _import_without_asking() -> None:
    real = sys.__stdout__
    setattr(sys, "__stdout__", _NotATerminal(real))  # noqa: B010 - typeshed marks it Final
    try:
        import textual_image.widget  # noqa: F401
    finally:
        setattr(sys, "__stdout__", real)  # noqa: B010
