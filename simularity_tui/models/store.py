"""Where pulled models live, and which of them are offered.

`<data dir>/models/OWNER/NAME/FILE.gguf`: plain files a player can find, back up or point another
program at (the data directory, not the cache: a model costs gigabytes to fetch again). Beside each:

- `FILE.gguf.verified`: the stamp written once the file passed every check (verify.py), with its
  size and mtime. Only a file whose stamp matches it is *installed*: offered to play, listed, used.
- `FILE.gguf.<etag>.partial`: a download under way or stopped; the next pull goes on from it. Named
  by the Hub's ETag, so bytes of an older version of the file are never joined to a newer one.
- `.FILE.gguf.lock`: held while a pull writes, so two pulls of one file (the screen and the command
  line) cannot interleave.
"""

from __future__ import annotations

import errno
import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..atomic import write_atomic
from .catalogue import REPO_ID
from .errors import ModelLibraryError

STAMP_SUFFIX = ".verified"
PARTIAL_SUFFIX = ".partial"
_REPO = re.compile(REPO_ID)


@dataclass(frozen=True)
class InstalledFile:
    repo: str
    file: str
    path: Path
    size: int
    sha256: str
    commit: str  # the repository's commit the file came from


def library_dir() -> Path:
    return paths.data_dir() / "models"


def check_repo_file(repo: str, file: str) -> None:
    """Refuse a repository id or a file name that is not one (and could lead outside the library)."""
    if not _REPO.fullmatch(repo):
        raise ModelLibraryError(f"'{repo}' is not a repository id", hint="Write it as OWNER/NAME, as on the Hub.")
    parts = file.split("/")
    if not file.endswith(".gguf") or file.startswith("/") or "\\" in file or {"", ".", ".."} & set(parts):
        raise ModelLibraryError(
            f"'{file}' is not a GGUF file's path in a repository", hint="Give the file's name, ending in .gguf."
        )


def target_path(repo: str, file: str) -> Path:
    check_repo_file(repo, file)
    return library_dir() / repo / file


def stamp_path(target: Path) -> Path:
    return target.with_name(target.name + STAMP_SUFFIX)


def partial_path(target: Path, etag: str) -> Path:
    tag = re.sub(r"[^0-9A-Za-z]", "", etag)[:16] or "unknown"
    return target.with_name(f"{target.name}.{tag}{PARTIAL_SUFFIX}")


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def partials(target: Path) -> list[Path]:
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f"{glob_escape(target.name)}.*{PARTIAL_SUFFIX}"))


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def partial_bytes(target: Path) -> int:
    """Bytes already fetched for `target` (0 when no pull was stopped)."""
    return sum(part.stat().st_size for part in partials(target))


def write_stamp(target: Path, *, repo: str, file: str, sha256: str, commit: str) -> InstalledFile:
    stat = target.stat()
    stamp = {"repo": repo, "file": file, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    write_atomic(stamp_path(target), json.dumps({**stamp, "sha256": sha256, "commit": commit}, indent=1))
    return InstalledFile(repo, file, target, stat.st_size, sha256, commit)


def installed(repo: str, file: str) -> InstalledFile | None:
    """The file pulled from `repo`, when it is there and its stamp matches it."""
    return _read_stamp(stamp_path(target_path(repo, file)))


def installed_files() -> list[InstalledFile]:
    root = library_dir()
    if not root.is_dir():
        return []
    found = (_read_stamp(stamp) for stamp in sorted(root.glob(f"*/*/**/*.gguf{STAMP_SUFFIX}")))
    return [item for item in found if item is not None]


def _read_stamp(stamp: Path) -> InstalledFile | None:
    target = stamp.with_name(stamp.name.removesuffix(STAMP_SUFFIX))
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        stat = target.stat()
        if not isinstance(data, dict) or (data.get("size"), data.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            return None  # changed since it was checked: not offered until pulled (and checked) again
        repo, file, sha256, commit = (str(data[key]) for key in ("repo", "file", "sha256", "commit"))
        return InstalledFile(repo, file, target, stat.st_size, sha256, commit)
    except (OSError, ValueError, KeyError):
        return None


def stopped_pulls() -> list[tuple[str, str]]:
    """(repo, file) of every partial download in the library."""
    root = library_dir()
    if not root.is_dir():
        return []
    found: set[tuple[str, str]] = set()
    for partial in root.glob(f"*/*/**/*.gguf.*{PARTIAL_SUFFIX}"):
        parts = partial.relative_to(root).parts
        name = partial.name.removesuffix(PARTIAL_SUFFIX).rsplit(".", 1)[0]  # FILE.gguf.<etag>.partial
        found.add(("/".join(parts[:2]), "/".join([*parts[2:-1], name])))
    return sorted(found)


def remove(repo: str, file: str) -> int:
    """Delete the file, its stamp and any partial download; the bytes freed (0: there was nothing)."""
    target = target_path(repo, file)
    freed = 0
    for path in [target, stamp_path(target), *partials(target), lock_path(target)]:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise ModelLibraryError(f"Cannot delete {path}: {error.strerror}", path=path) from None
        freed += size if path.suffix != ".lock" else 0
    _prune(target.parent)
    return freed


def _prune(folder: Path) -> None:
    """Remove the repository's folders once empty, up to the library itself."""
    root = library_dir()
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


@contextmanager
def pull_lock(target: Path) -> Iterator[None]:
    """Held while one pull writes `target`'s partial file; a second pull is refused, not queued."""
    lock = lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ModelLibraryError(
                f"{target.name} is being pulled already (by another simularity)",
                hint="Wait for that pull to end, or stop it; then pull again.",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
