"""Writing a book's lore into an existing pack: files of its own, the include, and nothing else.

The pack is the author's: only files an import wrote (lore_files.MARKER) are ever rewritten, and
scenario.toml only gets the new files added to its `include`, in its own text (toml_include.py).
Every file is written atomically, the manifest last; the pack is then loaded whole (as
`simularity check` does), and if it does not load, every file is put back as it was.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..atomic import write_atomic
from ..errors import UserFacingError
from ..text_rules import without_controls
from .card_errors import LorebookError
from .card_install import check_way
from .loader import LoadedPack, load_pack
from .lore_files import FILE_BUDGET, group, is_imported
from .sources import MAX_INCLUDED_FILES, SCENARIO_FILE, PackSources, matches_include
from .toml_include import IncludeEditError, with_included


@dataclass
class LorePlan:
    """What an import changes in a pack, by path inside it: file texts, and `include`'s new paths."""

    texts: dict[str, str] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)


def plan(
    sources: PackSources, entries: dict[str, dict[str, Any]], replaced: set[str], stem: str, header: str
) -> LorePlan:
    """New lore files for `entries` (`<stem>-001.toml`, …), and the imported files that held the
    `replaced` entries rewritten without them."""
    root = sources.root
    result = LorePlan()
    emptied: set[str] = set()
    for path in sorted({sources.origins[("lore", lore_id)] for lore_id in replaced}):
        relative = path.relative_to(root).as_posix()
        data = {section: dict(table) for section, table in tomllib.loads(sources.texts[path]).items()}
        lore = {key: value for key, value in data.get("lore", {}).items() if key not in replaced}
        data["lore"] = lore
        if not lore and len(data) == 1:
            emptied.add(relative)
        head = _header_of(sources.texts[path])
        kept = {section: table for section, table in data.items() if table}
        result.texts[relative] = head + (tomli_w.dumps(kept) if kept else "# (no entries left)\n")
    texts = [tomli_w.dumps({"lore": {key: entry}}) for key, entry in entries.items()]
    number = 0
    for found in group(texts, FILE_BUDGET - len(header.encode())):
        while True:
            number += 1
            relative = f"{stem}-{number:03}.toml"
            if relative in emptied or not os.path.lexists(root / relative):
                break
        result.texts[relative] = header + "\n".join(found)
    patterns = [p for p in sources.data.get("include", []) if isinstance(p, str)]
    result.include = [
        relative
        for relative in result.texts
        if not any(matches_include(root / relative, root, pattern) for pattern in patterns)
    ]
    existing = {path.relative_to(root).as_posix() for path in sources.texts if path != sources.manifest}
    new_files = [relative for relative in result.texts if relative not in existing]
    if len(existing) + len(new_files) > MAX_INCLUDED_FILES:
        raise LorebookError(
            f"{root}: the book needs {len(new_files)} more files, past the {MAX_INCLUDED_FILES} a pack may include",
            hint="Import a smaller book, or merge some of the pack's files.",
        )
    return result


def _header_of(text: str) -> str:
    """The comment lines at the top of an imported file (its marker and what it says)."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def apply(root: Path, changes: LorePlan, source: Path) -> LoadedPack:
    """Write `changes` into the pack at `root`, then load it; if it does not load, put every file back."""
    writes: dict[str, bytes] = {relative: text.encode() for relative, text in changes.texts.items()}
    if changes.include:
        manifest = _manifest_text(root)
        try:
            writes[SCENARIO_FILE] = with_included(manifest, changes.include).encode()
        except IncludeEditError as error:
            raise LorebookError(
                f"{root / SCENARIO_FILE}: could not add the book's files to `include`: {error}",
                hint=f"Add {', '.join(changes.include)} to include yourself, then import again.",
            ) from None
    for relative in writes:
        check_way(root, Path(relative))
    before = {relative: _old(root / relative) for relative in writes}
    try:
        for relative in sorted(writes, key=lambda r: r == SCENARIO_FILE):  # the manifest last
            write_atomic(root / relative, writes[relative])
        return load_pack(root)
    except UserFacingError as error:
        _restore(root, before)
        first = without_controls(error.message.splitlines()[0], keep_newlines=False)
        raise LorebookError(
            f"{source}: the pack would not be valid with this book: {first}",
            hint=f"Nothing was changed in {root}. Please report this book as an import-lorebook bug.",
        ) from None
    except OSError as error:
        _restore(root, before)
        raise LorebookError(f"cannot write the lore into {root} ({error.strerror})") from None


def _manifest_text(root: Path) -> str:
    raw = (root / SCENARIO_FILE).read_bytes()
    return raw.decode("utf-8")


def _old(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() and not path.is_symlink() else None


def _restore(root: Path, before: dict[str, bytes | None]) -> None:
    for relative, content in before.items():
        path = root / relative
        try:
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, content)
        except OSError:
            pass  # best effort: the message says what failed


def imported_files(sources: PackSources) -> set[Path]:
    """The pack's files an import wrote (and may rewrite)."""
    return {path for path, text in sources.texts.items() if path != sources.manifest and is_imported(text)}
