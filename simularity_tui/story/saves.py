"""A pack's saves and what a player does with them: list, branch, delete, name copies, export.

A save is `saves/<pack id>/<name>.toml` in the data directory (its format: save_file.py); beside
it, `<name>.kv` holds the KV state file, so that resuming reads only what is new. The TUI, the
command line and scripts all go through these functions.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import NARRATOR, Pack
from ..toml_source import parse_toml
from ..untrusted_text import printable
from .save_file import MAX_SAVE_BYTES, read_save
from .tree import Line

if TYPE_CHECKING:
    from .game import Game

NAME_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_STAMP = "%Y-%m-%d %H.%M.%S"


class SaveExists(UserFacingError):
    """A save by the name asked for exists already: saving under it would lose another story."""


@dataclass(frozen=True)
class SaveSummary:
    """A save as a listing shows it."""

    name: str
    path: Path
    last_played: str | None  # when it was last written, as the save says it ("?" if it does not); None: unreadable
    lines: int | None  # None: unreadable

    @property
    def readable(self) -> bool:
        return self.lines is not None


def saves_dir(pack_id: str) -> Path:
    return paths.data_dir() / "saves" / pack_id


def save_path(pack_id: str, name: str) -> Path:
    if not _NAME.match(name):
        raise UserFacingError(
            f"'{name}' cannot name a save", hint="Use letters, digits, spaces, '.', '-' and '_' (up to 64)."
        )
    return saves_dir(pack_id) / f"{name}.toml"


def kv_path(save: Path) -> Path:
    """The KV state file beside a save."""
    return save.with_suffix(".kv")


def save_exists(path: Path) -> bool:
    """Whether a save is there, a link to nowhere included (it is listed, and its name is taken)."""
    return path.exists() or path.is_symlink()


# -- listing --------------------------------------------------------------------------------------


AUTOSAVE = "autosave"  # the save a pack plays in when the player names none


def last_played(pack_id: str) -> str:
    """The name of the pack's save played last, or `AUTOSAVE` when it has none: what Enter resumes."""
    saves = list_saves(pack_id)
    return saves[0].stem if saves else AUTOSAVE


def list_saves(pack_id: str) -> list[Path]:
    """The pack's saves, the last played first, without reading them (see `save_summaries`). A link
    that leads nowhere or a file that cannot be read is listed too (reading it says what is wrong,
    and it can be deleted); a directory is not."""
    directory = saves_dir(pack_id)
    if not directory.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    for path in directory.glob("*.toml"):
        try:
            if path.is_dir():
                continue
            found.append((path.lstat().st_mtime, path))  # lstat: a dangling link has no target to stat
        except OSError:  # gone since the listing, or a directory we may not look into
            continue
    return [path for _mtime, path in sorted(found, key=lambda item: item[0], reverse=True)]


def save_summaries(pack_id: str) -> list[SaveSummary]:
    """The pack's saves, the last played first, each with when it was played and how many lines it
    holds (each save is read: a listing to show, not to count saves)."""
    return [_summary(path) for path in list_saves(pack_id)]


def _summary(path: Path) -> SaveSummary:
    try:
        document, _source = parse_toml(path, max_bytes=MAX_SAVE_BYTES)
    except UserFacingError:  # not a regular file, too big, not UTF-8, not TOML, nested past reason
        return SaveSummary(path.stem, path, None, None)
    nodes = document.get("nodes", [])
    if not isinstance(nodes, list):
        return SaveSummary(path.stem, path, None, None)
    return SaveSummary(path.stem, path, str(document.get("updated", "?")), len(nodes))


# -- changing -------------------------------------------------------------------------------------


def branch_save(pack_id: str, source: str, name: str) -> Path:
    """Copy the save `source` (and its KV state file) as a new save `name`; returns its path.

    A name in use is refused (SaveExists): a branch never overwrites a story."""
    target = save_path(pack_id, name)
    if save_exists(target):
        raise SaveExists(f"There is already a save '{name}'.", hint="Choose another name.")
    original = save_path(pack_id, source)
    try:
        shutil.copyfile(original, target)
        if kv_path(original).exists():
            shutil.copyfile(kv_path(original), kv_path(target))
    except OSError as error:  # a save listed but unreadable (a dangling link, say)
        target.unlink(missing_ok=True)
        kv_path(target).unlink(missing_ok=True)
        raise UserFacingError(f"Cannot branch from '{source}' ({error.strerror}).", path=original) from None
    return target


def delete_save(path: Path) -> None:
    """Delete a save and its KV state file (a link to nowhere too); a missing one is no error."""
    if path.is_dir() and not path.is_symlink():
        raise UserFacingError(f"{path} is a directory, not a save", hint="Remove it by hand if it is not wanted.")
    try:
        path.unlink(missing_ok=True)
        kv_path(path).unlink(missing_ok=True)
    except OSError as error:
        raise UserFacingError(f"{path}: cannot delete ({error.strerror})", path=path) from None


def copy_name(pack_id: str, stem: str, *, now: datetime | None = None) -> str:
    """A name for a copy of the save `stem`: the stem, then the time, then " 2", " 3"... if a save by
    that name exists already. A long stem is shortened, never the time: two copies made one after
    the other must not get one name (the second would overwrite the first)."""
    stamp = (now or datetime.now()).strftime(_STAMP)
    for number in range(1, 10_000):
        tail = f" {stamp}" + (f" {number}" if number > 1 else "")
        name = f"{stem[: NAME_LENGTH - len(tail)].rstrip()}{tail}"
        if not save_exists(save_path(pack_id, name)):
            return name
    raise UserFacingError(f"too many copies of '{stem}' this second", hint="Try again in a moment.")


# -- export ---------------------------------------------------------------------------------------


def export_path(pack_id: str, save_name: str) -> Path:
    """Where the game exports a save's transcript: `exports/<pack id> - <save name>.md` in the data
    directory, which is made here when missing (a path a script names is the script's to make)."""
    directory = paths.data_dir() / "exports"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserFacingError(f"cannot make {directory} ({error.strerror})", path=directory) from None
    return directory / f"{pack_id} - {save_name}.md"


def export_transcript(game: Game, path: Path) -> None:
    """Write the story in play to `path` as Markdown."""
    _write(path, transcript_markdown(game.pack, game.episode, game.lines, game.unlocked))


def export_save(loaded: LoadedPack, save_name: str, path: Path) -> None:
    """Write the story of a save that is not in play to `path` as Markdown; it is read without the
    model (its lines' text is all a transcript needs)."""
    saved = read_save(save_path(loaded.pack.id, save_name), loaded, model="")
    _write(path, transcript_markdown(loaded.pack, saved.episode, saved.tree.lines(), saved.unlocked))


def transcript_markdown(pack: Pack, episode: str, lines: list[Line], unlocked: dict[str, int]) -> str:
    """A story's lines as Markdown."""
    out = [f"# {pack.name}", "", f"*{pack.episodes[episode].name}*" if episode in pack.episodes else "", ""]
    for line in lines:
        if line.speaker == NARRATOR:
            out.append(f"*{line.text}*")
        else:
            out.append(f"**{pack.speaker_name(line.speaker)}** ({line.clock}): {line.text}")
        out.append("")
    if unlocked:
        out += ["## Achievements", ""]
        out += [f"- {pack.achievements[a].title}" for a in unlocked if a in pack.achievements]
    return printable("\n".join(out).rstrip() + "\n")  # read with `cat` in a terminal, too


def _write(path: Path, markdown: str) -> None:
    try:
        path.write_text(markdown, encoding="utf-8")
    except OSError as error:
        raise UserFacingError(f"cannot write {path} ({error.strerror})", path=path) from None
