"""Themes: TOML files in `themes/` (bundled) and in the config directory (the player's own),
turned into Textual themes; a pack's `[theme]` becomes one too.

A theme file names its colours; a wrong key or value is reported as `file:line:col` and that theme
is left out, never the game.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.theme import Theme

from .. import paths
from ..errors import UserFacingError
from ..first_frame import read_small_toml

if TYPE_CHECKING:
    from ..scenario.schema import Pack

DEFAULT_THEME = "lamplight"
_COLOURS = (
    "primary", "secondary", "accent", "foreground", "background", "surface", "panel", "success", "warning", "error"
)  # fmt: skip
# theme_file.ThemeFile's rules, for the first frame's reading (quick_themes): a subset of what it accepts.
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def bundled_themes_dir() -> Path:
    """`themes/` at the top of the source tree; inside the wheel, `simularity_tui/_themes`."""
    installed = Path(__file__).resolve().parents[1] / "_themes"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "themes"


def user_themes_dir() -> Path:
    return paths.config_dir() / "themes"


def _theme_files() -> list[Path]:
    """Every theme file, bundled then the player's (which may replace a bundled one by name)."""
    return [
        path
        for directory in (bundled_themes_dir(), user_themes_dir())
        for path in (sorted(directory.glob("*.toml")) if directory.is_dir() else [])
    ]


def load_themes() -> tuple[list[Theme], list[UserFacingError]]:
    """Every theme file, bundled then the player's (which may replace a bundled one by name)."""
    from ..toml_source import load_model  # pydantic: after the first frame
    from .theme_file import ThemeFile

    themes: dict[str, Theme] = {}
    problems: list[UserFacingError] = []
    for path in _theme_files():
        try:
            loaded = load_model(path, ThemeFile, hint=f"Fix {path}; see themes/ for examples.")
        except UserFacingError as problem:
            problems.append(problem)
            continue
        assert isinstance(loaded, ThemeFile)
        themes[loaded.name] = Theme(**loaded.model_dump(exclude_none=True))
    return list(themes.values()), problems


def quick_themes() -> list[Theme]:
    """The theme files that are plainly right, read without pydantic, for the first frame: each
    one `load_themes` would load the same way. The others wait for `load_themes`, which explains
    what is wrong with them (right after the first frame)."""
    themes: dict[str, Theme] = {}
    for path in _theme_files():
        data = read_small_toml(path)
        if data is None or not _plainly_right(data):
            continue
        themes[data["name"]] = Theme(**{"dark": True, **data})
    return list(themes.values())


def _plainly_right(data: dict[str, Any]) -> bool:
    """What ThemeFile surely accepts, as it is: its keys only, a name, a bool (not "yes"), `#rrggbb` colours."""
    name, dark = data.get("name"), data.get("dark", True)
    colours = [value for key, value in data.items() if key not in ("name", "dark")]
    return (
        set(data) <= {"name", "dark", *_COLOURS}
        and "primary" in data
        and isinstance(name, str)
        and _NAME.fullmatch(name) is not None
        and isinstance(dark, bool)
        and all(isinstance(colour, str) and _COLOUR.fullmatch(colour) is not None for colour in colours)
    )


def pack_theme(pack: Pack) -> Theme | None:
    """The pack's own theme, named after the pack, when it has one."""
    if pack.theme is None or pack.theme.primary is None:
        return None
    colours = pack.theme.model_dump(exclude_none=True, exclude={"dark"})
    return Theme(name=f"pack-{pack.id}", dark=pack.theme.dark, **colours)
