"""Reading TOML for people: syntax and validation errors as `file:line:col: message`.

tomllib gives values but no positions, so positions come from a small scan of the source that
follows table headers and keys. It is used only to *point at* a problem; the values always come
from tomllib.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .errors import UserFacingError

KeyPath = Sequence[str | int]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


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
    for number, line in enumerate(source.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            names: list[str | int] = list(_split_dotted(header.group(2)))
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
                if line.count(delimiter) % 2:
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


def parse_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Read and parse `path`; a syntax error becomes a `TomlProblems` pointing at its line."""
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserFacingError(f"{path}: file not found", hint="Check the path.", path=path) from None
    except UnicodeDecodeError as error:
        raise TomlProblems(
            [Problem(path, 1, 1, f"not UTF-8 text ({error.reason} at byte {error.start})")],
            hint="Save the file as UTF-8.",
        ) from None
    except OSError as error:
        raise UserFacingError(f"{path}: cannot read ({error.strerror})", path=path) from None
    return parse_toml_text(path, source), source


def parse_toml_text(path: Path, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        raise TomlProblems(
            [syntax_problem(path, error)], hint="Fix the syntax at that line (see https://toml.io)."
        ) from None


def syntax_problem(path: Path, error: tomllib.TOMLDecodeError) -> Problem:
    position = _SYNTAX_POSITION.search(str(error))
    line, col = (int(position.group(1)), int(position.group(2))) if position else (1, 1)
    message = _SYNTAX_POSITION.sub("", str(error)).strip()
    return Problem(path, line, col, f"TOML syntax error: {message}")


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
