"""Installing a built pack in OUT_DIR: checked, staged, validated, then moved into place.

The pack's contents come from a stranger's card, and OUT_DIR may already hold files, so the import
must neither leave a half-written or invalid pack behind nor write anywhere but OUT_DIR. OUT_DIR is
checked before any work; the pack is written to a staging directory of its own (new files only,
never through a symlink), validated there with `load_pack`, and only then moved in, the manifest
last, once nothing in OUT_DIR is in its way: a refused import leaves OUT_DIR as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from ..errors import UserFacingError
from ..text_rules import without_controls
from .card_errors import CardError
from .loader import LoadedPack, load_pack
from .sources import SCENARIO_FILE


def check_target(out_dir: Path, *, replace: bool) -> None:
    """Refuse, before any work, an OUT_DIR the pack cannot go to."""
    if out_dir.is_symlink():
        raise CardError(
            f"{out_dir} is a symbolic link; the import writes only into a real directory",
            hint="Give the directory the link leads to, or another output directory.",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise CardError(f"{out_dir} exists and is not a directory", hint="Choose another output directory.")
    if os.path.lexists(out_dir / SCENARIO_FILE) and not replace:
        raise CardError(
            f"{out_dir} already holds a pack", hint="Choose another directory, or pass --force to replace it."
        )
    ancestor = _existing_ancestor(out_dir)
    if not ancestor.is_dir():
        raise CardError(
            f"cannot make {out_dir}: {ancestor} is not a directory", hint="Choose another output directory."
        )


def _existing_ancestor(path: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    return next(p for p in (absolute, *absolute.parents) if os.path.lexists(p))


def install(files: dict[str, bytes], out_dir: Path, card: Path) -> LoadedPack:
    """Write the pack to a new directory next to (or, when it exists, inside) OUT_DIR, validate it
    there, then move it into place: OUT_DIR gets a valid pack or nothing at all."""
    exists = out_dir.is_dir()
    home = Path(os.path.abspath(out_dir)) if exists else _existing_ancestor(out_dir)
    try:
        staging = home / f".{out_dir.name or 'pack'}.import-{secrets.token_hex(4)}"
        os.mkdir(staging)
    except OSError as error:
        raise _unwritable(out_dir, error) from None
    try:
        for relative, content in files.items():
            _write_new(staging / relative, content)
        loaded = _validate(staging, card, out_dir)
        if exists:
            _move_files(staging, out_dir, list(files))
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, out_dir)
    except OSError as error:
        raise _unwritable(out_dir, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files_there = tuple(out_dir / path.relative_to(staging) for path in loaded.files)
    return LoadedPack(root=out_dir, pack=loaded.pack, files=files_there)


def _unwritable(out_dir: Path, error: OSError) -> CardError:
    return CardError(
        f"cannot write the pack to {out_dir} ({error.strerror})", hint="Choose a directory you can write to."
    )


def _write_new(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename that makes it the pack's


def _validate(staging: Path, card: Path, out_dir: Path) -> LoadedPack:
    try:
        return load_pack(staging)
    except UserFacingError as error:  # a bug here, or a card this importer cannot handle yet
        first = error.message.splitlines()[0].replace(f"{staging}{os.sep}", "")
        raise CardError(
            f"{card}: the pack made from it would not be valid: {without_controls(first, keep_newlines=False)}",
            hint=f"Nothing was written to {out_dir}. Please report this card as an import-card bug.",
        ) from None


def _move_files(staging: Path, out_dir: Path, relatives: list[str]) -> None:
    """Move the pack's files over OUT_DIR's, the manifest last, once nothing is in the way."""
    for relative in relatives:
        check_way(out_dir, Path(relative))
    for relative in sorted(relatives, key=lambda r: r == SCENARIO_FILE):
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / relative, out_dir / relative)


def check_way(out_dir: Path, relative: Path) -> None:
    """Refuse a symlink, or the wrong kind of file, where `relative` will be written in OUT_DIR."""
    hint = f"Move it away, or choose another output directory than {out_dir}."
    for folder in reversed(relative.parents[:-1]):
        _refuse_in_the_way(out_dir / folder, "directory", hint)
    _refuse_in_the_way(out_dir / relative, "file", hint)


def _refuse_in_the_way(path: Path, kind: str, hint: str) -> None:
    """Refuse a symlink at `path`, or anything there but a `kind` ("directory" or "file")."""
    if path.is_symlink():
        raise CardError(f"{path} is a symbolic link; the import never writes through a link", hint=hint)
    if path.exists() and not (path.is_dir() if kind == "directory" else path.is_file()):
        raise CardError(f"{path} is in the way: the pack needs a {kind} there", hint=hint)
