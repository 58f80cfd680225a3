"""Reading a pack's TOML files: `scenario.toml` and the files it includes, safely.

Packs come from strangers. Every path is resolved (symlinks included) and must stay inside the
pack; every TOML file is size-limited before it is read. Included files add entries to the
entry tables (characters, scenes, …); each entry remembers the file it came from, so that a
problem with it is reported at its own file and line.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserFacingError
from ..toml_source import MAX_TOML_BYTES, KeyPath, Problem, TomlProblems, locate, read_text_file, read_toml
from .schema import ENTRY_SECTIONS

SCENARIO_FILE = "scenario.toml"
MAX_INCLUDED_FILES = 64
MAX_PACK_ENTRIES = 20_000  # files and folders looked at for `include` globs and hot reload


class PathOutsidePack(ValueError):
    """A path that is absolute, or leads (through .. or a symlink) out of the pack."""


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of `relative` within the pack at `root`; raises `PathOutsidePack`."""
    if problem := path_form_problem(relative):
        raise PathOutsidePack(problem)
    real_root = root.resolve()
    resolved = (real_root / relative).resolve()
    if not resolved.is_relative_to(real_root):
        raise PathOutsidePack(f"'{relative}' leads outside the pack")
    return resolved


def path_form_problem(relative: str) -> str | None:
    """What is wrong with how `relative` is written, before it is looked up at all."""
    if any(ord(char) < 32 or ord(char) == 127 for char in relative):
        return f"{relative!r} has control characters in it"
    if not relative or "\\" in relative or Path(relative).is_absolute() or relative.startswith("~"):
        return f"'{relative}' must be a path relative to the pack (with / between folders)"
    return None


@dataclass
class PackSources:
    root: Path
    texts: dict[Path, str] = field(default_factory=dict)  # every TOML file read, for locating keys
    data: dict[str, Any] = field(default_factory=dict)  # all files merged
    origins: dict[tuple[str, str], Path] = field(default_factory=dict)  # (section, id) -> its file

    @property
    def manifest(self) -> Path:
        return self.root / SCENARIO_FILE

    def where(self, key_path: KeyPath) -> tuple[Path, int, int]:
        """The file, line and column that define `key_path` in the merged data."""
        path = self.manifest
        if len(key_path) >= 2 and key_path[0] in ENTRY_SECTIONS:
            path = self.origins.get((str(key_path[0]), str(key_path[1])), path)
        return (path, *locate(self.texts.get(path, ""), key_path))

    def problem(self, key_path: KeyPath, message: str) -> Problem:
        return Problem(*self.where(key_path), message)


def read_sources(root: Path) -> tuple[PackSources, list[Problem]]:
    """Read `scenario.toml` and its includes. Problems here (syntax, size, paths) stop the load."""
    sources = PackSources(root)
    problems: list[Problem] = []
    manifest = _read(sources, sources.manifest, problems)
    if manifest is None:
        return sources, problems
    sources.data = manifest
    for section in ENTRY_SECTIONS:
        if isinstance(manifest.get(section), dict):
            for entry in manifest[section]:
                sources.origins[(section, entry)] = sources.manifest
    for included in _included_files(sources, manifest.get("include", []), problems):
        data = _read(sources, included, problems)
        if data is not None:
            _merge(sources, included, data, problems)
    return sources, problems


def _read(sources: PackSources, path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    if not path.resolve().is_relative_to(sources.root.resolve()):
        problems.append(Problem(path, 1, 1, "this file is a link to a place outside the pack"))
        return None
    try:
        text = read_text_file(path, max_bytes=MAX_TOML_BYTES, what="a pack's TOML file")
    except TomlProblems as refused:
        problems.extend(refused.problems)
        return None
    except UserFacingError as refused:
        problems.append(Problem(path, 1, 1, refused.message.removeprefix(f"{path}: ")))
        return None
    sources.texts[path] = text
    data, problem = read_toml(path, text)
    if problem is not None:
        problems.append(problem)
        return None
    return data


def _included_files(sources: PackSources, patterns: object, problems: list[Problem]) -> list[Path]:
    """The files `include` names, in order; glob patterns allowed, each file once."""
    if not isinstance(patterns, list):
        return []  # the schema reports the wrong type
    found: list[Path] = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            continue
        if path_form_problem(pattern) or ".." in Path(pattern).parts:
            problems.append(sources.problem(["include", index], f"include {pattern!r} must stay inside the pack"))
            continue
        if any(wildcard in pattern for wildcard in "*?["):
            matches = [
                m for m in pack_files(sources.root) if m.suffix == ".toml" and _glob_match(m, sources.root, pattern)
            ]
        else:
            matches = [sources.root / pattern] if (sources.root / pattern).is_file() else []
        if not matches:
            problems.append(sources.problem(["include", index], f"include '{pattern}': no such file in the pack"))
        elif any(m.suffix != ".toml" for m in matches):
            problems.append(sources.problem(["include", index], f"include '{pattern}': only .toml files"))
        else:
            found.extend(m for m in matches if m not in found and m != sources.manifest)
    if len(found) > MAX_INCLUDED_FILES:
        problems.append(sources.problem(["include"], f"{len(found)} included files; at most {MAX_INCLUDED_FILES}"))
        return found[:MAX_INCLUDED_FILES]
    return found


def pack_files(root: Path) -> list[Path]:
    """Every file in the pack, in order, found without following a link to a directory (a link
    could lead anywhere: `/`, `/proc`, a loop); at most `MAX_PACK_ENTRIES` looked at."""
    return [path for path in _walk(root) if not path.is_dir()]


def pack_directories(root: Path) -> list[Path]:
    """The pack's directories, its root first, found as `pack_files` finds files."""
    return [root, *(path for path in _walk(root) if path.is_dir() and not path.is_symlink())]


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories.sort()
        base = Path(directory)
        for name in [*subdirectories, *sorted(files)]:
            found.append(base / name)
            if len(found) >= MAX_PACK_ENTRIES:
                return sorted(found)
    return sorted(found)


def matches_include(path: Path, root: Path, pattern: str) -> bool:
    """Whether `path` (inside `root`) is one `include` names with `pattern` (a path, or a glob)."""
    if not any(wildcard in pattern for wildcard in "*?["):
        return path == root / pattern
    return _glob_match(path, root, pattern)


def _glob_match(path: Path, root: Path, pattern: str) -> bool:
    """Whether `path` (inside `root`) matches the glob `pattern`: `*`, `?` and `[…]` within a name,
    `**` for any number of folders."""
    wanted: list[str] = []
    for part in pattern.split("/"):
        if part and not (part == "**" and wanted[-1:] == ["**"]):  # a/**/**/b is a/**/b
            wanted.append(part)
    return _match_parts(path.relative_to(root).parts, tuple(wanted))


@functools.lru_cache(maxsize=4096)
def _match_parts(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(parts[skip:], pattern[1:]) for skip in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(parts[1:], pattern[1:])


def _merge(sources: PackSources, path: Path, data: dict[str, Any], problems: list[Problem]) -> None:
    text = sources.texts[path]
    for section, entries in data.items():
        if section not in ENTRY_SECTIONS:
            problems.append(
                Problem(
                    path,
                    *locate(text, [section]),
                    f"'{section}' cannot be in an included file; included files hold only {', '.join(ENTRY_SECTIONS)}",
                )
            )
            continue
        if not isinstance(entries, dict):
            problems.append(Problem(path, *locate(text, [section]), f"'{section}' must be a table of entries"))
            continue
        merged = sources.data.setdefault(section, {})
        if not isinstance(merged, dict):
            continue  # scenario.toml has a wrong type here: the schema reports it
        for entry, value in entries.items():
            if entry in merged:
                first, line, _ = sources.where([section, entry])
                problems.append(
                    Problem(
                        path,
                        *locate(text, [section, entry]),
                        f"{section}.{entry} is defined twice (also at {first.name}:{line})",
                    )
                )
                continue
            merged[entry] = value
            sources.origins[(section, entry)] = path
