"""`[model] path` in settings.toml, as `simularity models use` and the Models screen set it.

Only that one value changes: the player's comments, order and other keys stay as they wrote them
(the settings screen rewrites the whole file; a one-key command should not). Where the file is laid
out in a way a line edit cannot follow (a dotted key, an inline table), it is written as the
settings screen writes it, values kept. Either way the result is read back and checked first.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import tomli_w
from pydantic import ValidationError

from . import paths
from .atomic import write_atomic
from .errors import UserFacingError
from .settings import Settings, load_settings, save_settings
from .toml_source import locate, read_text_file

_PATH_LINE = re.compile(
    r"""^(?P<indent>[ \t]*)path[ \t]*=[ \t]*(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*')(?P<rest>[ \t]*(?:#.*)?)$"""
)
_MODEL_HEADER = re.compile(r"^[ \t]*\[[ \t]*model[ \t]*\][ \t]*(?:#.*)?$")


def model_in_use(settings_file: Path | None = None) -> Path | None:
    """The file the game plays on by the settings file: `[model] path`, or the embedded model's
    when it is empty; None when the file cannot be read (it is reported where it is used)."""
    from .engine.embedded_model import embedded_model_path

    try:
        value = load_settings(settings_file).model.path
    except UserFacingError:
        return None
    return Path(value).expanduser() if value else embedded_model_path(paths.cache_dir())


def set_model_path(value: str, settings_file: Path | None = None) -> Path:
    """Set `[model] path` to `value` ("" for the embedded model); the file written."""
    path = settings_file or paths.settings_file()
    current = load_settings(path)  # a broken file is refused here, at its file:line:col
    wanted = current.model_copy(deep=True)
    try:
        wanted.model.path = value  # checked as the file would be (one line, no control characters)
    except ValidationError as error:
        raise UserFacingError(f"Cannot set [model] path to {value!r}: {error.errors()[0]['msg']}") from None
    source = read_text_file(path) if path.exists() else ""
    edited = _edited(source, value)
    if _reads_as(edited, wanted):
        write_atomic(path, edited)
        return path
    return save_settings(wanted, path)


def _edited(source: str, value: str) -> str:
    """`source` with its `path` line under [model] replaced (or added)."""
    entry = tomli_w.dumps({"path": value}).strip()
    lines = source.splitlines(keepends=True)
    number, _col = locate(source, ["model", "path"])
    found = _PATH_LINE.match(lines[number - 1].rstrip("\r\n")) if lines else None
    if found is not None:
        lines[number - 1] = f"{found['indent']}{entry}{found['rest']}\n"
        return "".join(lines)
    header = next((index for index, line in enumerate(lines) if _MODEL_HEADER.match(line.rstrip("\r\n"))), None)
    if header is None:
        separator = "" if not source or source.endswith("\n") else "\n"
        return f"{source}{separator}{chr(10) if source else ''}[model]\n{entry}\n"
    lines.insert(header + 1, entry + "\n")
    return "".join(lines)


def _reads_as(text: str, wanted: Settings) -> bool:
    """Whether `text` is exactly the settings wanted (else the line edit went wrong: not written)."""
    try:
        return Settings.model_validate(tomllib.loads(text)) == wanted
    except (tomllib.TOMLDecodeError, ValidationError):
        return False
