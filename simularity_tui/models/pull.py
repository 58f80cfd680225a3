"""A pull from start to end: ask the Hub, make room, fetch (resuming), check, then offer.

The file is fetched into its partial file and checked there; only a file that passed every check is
renamed to its own name and stamped (store.py), so nothing half-fetched or wrong is ever offered. A
stop (Ctrl+C, Cancel, a dropped network, a full disk) keeps the partial file for the next pull; a
file that fails a check, or that the server cut short, is deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import hub, store, verify
from .errors import ModelLibraryError, PullStopped
from .hub_errors import CutShort

PullProgress = Callable[[str, int, int | None], None]  # (phase: "download" or "check", done, total)


@dataclass(frozen=True)
class Target:
    """A file to pull, and what the catalogue knows of it."""

    repo: str
    file: str
    label: str  # how the player named it: NAME:QUANT, or OWNER/NAME FILE
    size: int | None = None  # exact, when the catalogue gives it
    sha256: str | None = None

    @property
    def where(self) -> str:
        return f"{self.repo}/{self.file}"


def pull(
    target: Target, *, progress: PullProgress | None = None, cancelled: Callable[[], bool] | None = None
) -> store.InstalledFile:
    """Pull `target` (nothing to do when it is installed); `cancelled` is asked every MiB."""
    existing = store.installed(target.repo, target.file)
    if existing is not None:
        return existing
    remote = hub.locate(target.repo, target.file)
    _agrees(target, remote)
    path = store.target_path(target.repo, target.file)
    with store.pull_lock(path):
        partial = store.partial_path(path, remote.etag)
        for stale in store.partials(path):
            if stale != partial:
                stale.unlink()  # bytes of an older version of the file: never joined to the new one
        if path.exists() and not partial.exists():  # stopped after its rename, before its stamp
            os.replace(path, partial)  # checked again below; fetched again only if incomplete
        _make_room(target, partial, remote.size)
        _fetch(target, remote, partial, progress, cancelled)
        sha256 = _check(target, remote, partial, progress)
        partial.chmod(0o644)  # public weights: other accounts on a shared machine may read them
        os.replace(partial, path)
        return store.write_stamp(path, repo=target.repo, file=target.file, sha256=sha256, commit=remote.commit)


def _check(target: Target, remote: hub.RemoteFile, partial: Path, progress: PullProgress | None) -> str:
    """The downloaded file's sha256 once every check passed; a file that fails one is deleted."""
    try:
        return verify.check_download(
            partial,
            label=target.where,
            size=remote.size,
            sha256=target.sha256 or remote.sha256,
            progress=(lambda done, total: progress("check", done, total)) if progress else None,
        )
    except verify.CheckFailed as failed:
        partial.unlink(missing_ok=True)
        hint = "It was deleted. Pull again; if it fails again, the repository's file is damaged or has changed."
        raise verify.CheckFailed(failed.message, hint=hint) from None


def _agrees(target: Target, remote: hub.RemoteFile) -> None:
    """The catalogue and the Hub must describe one file; if the repository changed, say so now,
    not after gigabytes."""
    if target.size is not None and remote.size is not None and target.size != remote.size:
        changed = f"{remote.size:,} bytes on the Hub, {target.size:,} in the catalogue"
    elif target.sha256 and remote.sha256 and target.sha256 != remote.sha256:
        changed = f"sha256 {remote.sha256} on the Hub, {target.sha256} in the catalogue"
    else:
        return
    raise ModelLibraryError(
        f"The Hub's {target.where} is not the file the catalogue names ({changed}): the repository has changed",
        hint=f"`simularity models pull {target.repo} {target.file}` takes the Hub's file as it is now "
        "(checked against the Hub's own sha256).",
    )


def _make_room(target: Target, partial: Path, size: int | None) -> None:
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    needed = (size or 0) - have
    free = shutil.disk_usage(partial.parent).free
    if needed > free:
        raise ModelLibraryError(
            f"Not enough disk space for {target.label}: it needs {needed / 1e9:,.2f} GB more, and "
            f"{free / 1e9:,.2f} GB are free in {partial.parent}",
            hint="Free some space, or move the library elsewhere with SIMULARITY_DATA_DIR.",
        )


def _fetch(
    target: Target,
    remote: hub.RemoteFile,
    partial: Path,
    progress: PullProgress | None,
    cancelled: Callable[[], bool] | None,
) -> None:
    def on_bytes(done: int, total: int | None) -> None:
        if cancelled is not None and cancelled():
            raise stopped(target, done, total)
        if progress is not None:
            progress("download", done, total)

    try:
        hub.fetch(remote, partial, on_bytes)
    except CutShort:
        partial.unlink(missing_ok=True)  # the server's copy is shorter than it said: nothing to resume
        raise


def stopped(target: Target, done: int, total: int | None) -> PullStopped:
    """What a stopped pull says: what is kept, and how to go on."""
    of = f" of {total / 1e6:,.1f}" if total else ""
    return PullStopped(
        f"Stopped pulling {target.label}: {done / 1e6:,.1f}{of} MB kept",
        hint="Pull it again to go on from there; `simularity models rm` deletes what was kept.",
    )
