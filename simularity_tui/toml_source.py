"""Reading TOML for people: syntax and validation errors as `file:line:col: message`.

tomllib gives values but no positions, so positions come from a small scan of the source that
follows table headers and keys. It is used only to *point at* a problem; the values always come
from tomllib.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .errors import UserFacingError
from .toml_shape import shape_problem

KeyPath = Sequence[str | int]

# Both patterns run in linear time on any line (a header's name is matched greedily up to the first
# `]`, never lazily against trailing spaces), and only on a line's first `_SCAN_WIDTH` characters:
# a key or a table header is short, and a 1 MiB line must not cost more than a short one.
_HEADER = re.compile(r"\s*(\[\[?)([^\]\n]*)\]")
_KEY = re.compile(
    r"""\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)[ \t]*="""
)
_SCAN_WIDTH = 1024
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_AT_END = re.compile(r"\(at end of document\)")
MAX_TOML_BYTES = 1 << 20  # settings, themes, host.toml and each of a pack's files


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, at a 1-based line and column (0 when unknown)."""

    path: Path
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class TomlProblems(UserFacingError):
    """Every problem found in one or more TOML files (a pack), each as `file:line:col: message`."""

    def __init__(self, problems: list[Problem], *, hint: str) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems), hint=hint, path=problems[0].path)


def _split_dotted(key: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', key)
    return [double or single or bare for double, single, bare in parts]


def locate(source: str, key_path: KeyPath) -> tuple[int, int]:
    """Best 1-based (line, col) for `key_path`: the key itself; else the first key inside it (a
    table written only as `[a.b]` for `a`); else the nearest enclosing table."""
    target = list(key_path)
    best = (1, 1)
    best_len = -1
    first_inside: tuple[int, int] | None = None
    table: list[str | int] = []
    array_counts: dict[tuple[str | int, ...], int] = {}
    in_multiline: str | None = None  # the delimiter of a multi-line string being skipped
    for number, whole_line in enumerate(source.splitlines(), start=1):
        if in_multiline is not None:
            if whole_line.count(in_multiline) % 2:
                in_multiline = None
            continue
        line = whole_line[:_SCAN_WIDTH]
        header = _HEADER.match(line)
        if header:
            names: list[str | int] = list(_split_dotted(header.group(2).strip()))
            if header.group(1) == "[[":
                key = tuple(names)
                array_counts[key] = array_counts.get(key, -1) + 1
                names.append(array_counts[key])
            table = names
            candidate, col = table, line.index("[") + 1
        else:
            key_match = _KEY.match(line)
            if not key_match:
                continue
            for delimiter in ('"""', "'''"):
                if whole_line.count(delimiter) % 2:
                    in_multiline = delimiter
            candidate = table + list(_split_dotted(key_match.group(1)))
            col = key_match.start(1) + 1
        common = 0
        for a, b in zip(candidate, target):
            if a != b:
                break
            common += 1
        if common == len(target) and len(candidate) > len(target) and first_inside is None:
            first_inside = (number, col)
        if common == len(candidate) and common > best_len:
            best, best_len = (number, col), common
            if common == len(target):
                return best
    return first_inside or best


def read_text_file(path: Path, *, max_bytes: int = MAX_TOML_BYTES, what: str = "this file") -> str:
    """The UTF-8 text of the regular file `path` (a leading BOM dropped), read only when it holds at
    most `max_bytes`.

    Anything else (a FIFO that would block for ever, /dev/zero, a directory, a file too big or not
    UTF-8) is a `UserFacingError` naming the file, before more than `max_bytes` is read.
    """
    try:
        # Opened without blocking: opening a FIFO to read would wait for a writer for ever.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise UserFacingError(f"{path}: not a regular file", hint="Give the path of a TOML file.", path=path)
            raw = handle.read(max_bytes + 1) if status.st_size <= max_bytes else b""
    except FileNotFoundError:
        raise UserFacingError(f"{path}: file not found", hint="Check the path.", path=path) from None
    except IsADirectoryError:
        raise UserFacingError(
            f"{path}: a directory, not a file", hint="Give the path of a TOML file.", path=path
        ) from None
    except OSError as error:
        raise UserFacingError(f"{path}: cannot read ({error.strerror})", path=path) from None
    size = max(status.st_size, len(raw))  # a file may grow between the two
    if size > max_bytes:
        raise TomlProblems(
            [Problem(path, 1, 1, f"{size:,} bytes: {what} may be at most {max_bytes:,}")], hint="Make it smaller."
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise TomlProblems(
            [Problem(path, 1, 1, f"not UTF-8 text ({error.reason} at byte {error.start})")],
            hint="Save the file as UTF-8.",
        ) from None


def parse_toml(path: Path, *, max_bytes: int = MAX_TOML_BYTES) -> tuple[dict[str, Any], str]:
    """Read and parse `path`; a syntax error becomes a `TomlProblems` pointing at its line."""
    source = read_text_file(path, max_bytes=max_bytes)
    return parse_toml_text(path, source), source


def parse_toml_text(path: Path, source: str) -> dict[str, Any]:
    """`source` parsed; a syntax error, or a shape no real file has, becomes a `TomlProblems`."""
    data, problem = read_toml(path, source)
    if problem is not None:
        raise TomlProblems([problem], hint="Fix the syntax at that line (see https://toml.io).")
    return data


def read_toml(path: Path, source: str) -> tuple[dict[str, Any], Problem | None]:
    """`source` parsed, or what stops it from being read: a syntax error, or nesting or dotted keys
    deep enough to make the parser recurse past Python's limit or take quadratic time."""
    shape = shape_problem(source)
    if shape is not None:
        position, message = shape
        return {}, Problem(path, *line_and_column(source, position), message)
    try:
        return tomllib.loads(source), None
    except tomllib.TOMLDecodeError as error:
        return {}, syntax_problem(path, error, source)


def syntax_problem(path: Path, error: tomllib.TOMLDecodeError, source: str = "") -> Problem:
    position = _SYNTAX_POSITION.search(str(error))
    if position:
        line, col = int(position.group(1)), int(position.group(2))
    elif _AT_END.search(str(error)):  # an unclosed string or table at the very end: its last line
        line, col = line_and_column(source, len(source.rstrip("\n")))
    else:
        line, col = 1, 1
    message = _AT_END.sub("", _SYNTAX_POSITION.sub("", str(error))).strip()
    return Problem(path, line, col, f"TOML syntax error: {message}")


def line_and_column(source: str, position: int) -> tuple[int, int]:
    """1-based line and column of the character at `position`."""
    line_start = source.rfind("\n", 0, position) + 1
    return source.count("\n", 0, position) + 1, position - line_start + 1


Locator = Callable[[KeyPath], tuple[Path, int, int]]


def in_file(path: Path, source: str) -> Locator:
    """A locator for data that all comes from one file."""

    def at(key_path: KeyPath) -> tuple[Path, int, int]:
        return (path, *locate(source, key_path))

    return at


def validation_problems(error: ValidationError, model: type[BaseModel], where: Locator) -> list[Problem]:
    """Pydantic errors as located problems; unknown keys get a "did you mean" from the schema."""
    problems = []
    for item in error.errors():
        loc = [part for part in item["loc"] if isinstance(part, (str, int))]
        if item["type"] == "missing":
            loc = loc[:-1]  # point at the table that lacks the key
        path, line, col = where(loc)
        dotted = ".".join(str(part) for part in item["loc"] if isinstance(part, (str, int))) or "(top level)"
        if item["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1])
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
            suggestion = (
                f"; did you mean '{guess[0]}'?"
                if guess
                else (f"; known keys: {', '.join(sorted(known))}" if known else "")
            )
            message = f"unknown key '{dotted}'{suggestion}"
        elif item["type"] == "missing":
            message = f"{dotted}: required, but missing"
        else:
            message = f"{dotted}: {_plain(item['msg'])}"
            if "input" in item and not isinstance(item["input"], (dict, list)):
                message += f" (got {_short(item['input'])})"
        problems.append(Problem(path, line, col, message))
    return problems


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """Field names of the table at `loc`, following models, lists and dicts of models."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    found = _step(annotation, None)
    return list(found.model_fields) if isinstance(found, type) and issubclass(found, BaseModel) else []


def _step(annotation: Any, part: str | int | None) -> Any:
    """The type one key below `annotation` (with `part=None`: `annotation` without wrappers)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _step(get_args(annotation)[0], part)
    if origin in (Union, UnionType):
        steps = [_step(arg, part) for arg in get_args(annotation) if arg is not type(None)]
        return next((found for found in steps if found is not None), None)
    if part is None:
        return annotation
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        field = annotation.model_fields.get(part)
        return field.annotation if field is not None else None
    return None


def load_model(path: Path, model: type[BaseModel], *, hint: str) -> BaseModel:
    """Parse `path` and validate it against `model`, raising every problem at once."""
    data, source = parse_toml(path)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise TomlProblems(validation_problems(error, model, in_file(path, source)), hint=hint) from None
