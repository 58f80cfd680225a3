"""Themes: TOML files in `themes/` (bundled) and in the config directory (the player's own),
turned into Textual themes; a pack's `[theme]` becomes one too.

A theme file names its colours; a wrong key or value is reported as `file:line:col` and that theme
is left out, never the game.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from textual.theme import Theme

from .. import paths
from ..errors import UserFacingError
from ..toml_source import load_model

if TYPE_CHECKING:
    from ..scenario.schema import Pack

Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
DEFAULT_THEME = "lamplight"
PACK_THEME = "pack"  # the setting that follows each pack's own theme


class ThemeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    dark: bool = True
    primary: Colour
    secondary: Colour | None = None
    accent: Colour | None = None
    foreground: Colour | None = None
    background: Colour | None = None
    surface: Colour | None = None
    panel: Colour | None = None
    success: Colour | None = None
    warning: Colour | None = None
    error: Colour | None = None


def bundled_themes_dir() -> Path:
    """`themes/` at the top of the source tree; inside the wheel, `simularity_tui/_themes`."""
    installed = Path(__file__).resolve().parents[1] / "_themes"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "themes"


def user_themes_dir() -> Path:
    return paths.config_dir() / "themes"


def load_themes() -> tuple[list[Theme], list[UserFacingError]]:
    """Every theme file, bundled then the player's (which may replace a bundled one by name)."""
    themes: dict[str, Theme] = {}
    problems: list[UserFacingError] = []
    for directory in (bundled_themes_dir(), user_themes_dir()):
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            try:
                loaded = load_model(path, ThemeFile, hint=f"Fix {path}; see themes/ for examples.")
            except UserFacingError as problem:
                problems.append(problem)
                continue
            assert isinstance(loaded, ThemeFile)
            themes[loaded.name] = Theme(**loaded.model_dump(exclude_none=True))
    return list(themes.values()), problems


def pack_theme(pack: Pack) -> Theme | None:
    """The pack's own theme, named after the pack, when it has one."""
    if pack.theme is None or pack.theme.primary is None:
        return None
    colours = pack.theme.model_dump(exclude_none=True, exclude={"dark"})
    return Theme(name=f"pack-{pack.id}", dark=pack.theme.dark, **colours)
