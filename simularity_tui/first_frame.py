"""What the game needs of settings.toml before its first frame, read with tomllib alone.

The whole file is validated (settings.py, with pydantic) right after the first frame, where the
model starts loading; a file with problems is explained then, on the error screen, at its lines.
Until then the first frame needs three values: how to draw (`[ui] graphics`), the colours
(`[ui] theme`) and where the player's packs are (`[game] scenarios_dir`). This reading never fails:
anything it does not understand (a file too big or unreadable, a syntax error, a wrong type) gives
the default here, and the validation explains it a moment later.

Also the names the command line and the app share with modules they must not import before the
first frame (settings.GraphicsMode, story.saves.AUTOSAVE; tests/test_imports.py holds them equal).
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import paths
from .text_rules import line_problem
from .toml_shape import shape_problem

if TYPE_CHECKING:
    from .settings import GraphicsMode

GRAPHICS_MODES = ("auto", "kitty", "sixel", "halfcell", "unicode", "none")  # settings.GraphicsMode
AUTOSAVE = "autosave"  # story.saves.AUTOSAVE: the save a game resumes by default
PACK_THEME = "pack"  # the theme setting that follows each pack's own theme (the default)
# A settings or theme file is a few hundred bytes; a bigger one waits for the full reading (which
# has its own limit, and says what is wrong).
QUICK_READ_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class FirstFrameSettings:
    """`[ui] graphics`, `[ui] theme` and `[game] scenarios_dir`, as the first frame shows them."""

    graphics: GraphicsMode = "auto"
    theme: str = PACK_THEME
    scenarios_dir: str = ""


def read_first_frame_settings(path: Path | None = None) -> FirstFrameSettings:
    """The first frame's values from the settings file `path` (default: the config dir's); each
    value that is missing or not plainly right is the default."""
    data = read_small_toml(path or paths.settings_file()) or {}
    ui = _table(data, "ui")
    game = _table(data, "game")
    graphics = _text(ui, "graphics", "auto")
    return FirstFrameSettings(
        graphics=cast("GraphicsMode", graphics if graphics in GRAPHICS_MODES else "auto"),
        theme=_text(ui, "theme", PACK_THEME),
        scenarios_dir=_text(game, "scenarios_dir", ""),
    )


def read_small_toml(path: Path) -> dict[str, Any] | None:
    """The TOML of the regular file `path` when it is small, UTF-8 and well formed; else None.

    Opened without blocking (a FIFO must not hang the start), and read only when it is a regular
    file of at most QUICK_READ_MAX_BYTES; the nesting is checked before tomllib reads it."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode) or status.st_size > QUICK_READ_MAX_BYTES:
                return None
            raw = handle.read(QUICK_READ_MAX_BYTES + 1)
        if len(raw) > QUICK_READ_MAX_BYTES:
            return None
        source = raw.decode("utf-8").removeprefix("\ufeff")
        if shape_problem(source) is not None:
            return None
        return tomllib.loads(source)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name)
    return table if isinstance(table, dict) else {}


def _text(table: dict[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    return value if isinstance(value, str) and line_problem(value, what="a setting") is None else default
