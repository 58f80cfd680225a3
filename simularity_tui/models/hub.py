"""The Hugging Face Hub, through huggingface_hub: where a file is, how big, and its bytes.

`get_hf_file_metadata` asks the Hub about a file (HEAD /OWNER/NAME/resolve/REVISION/FILE: the
commit, the ETag, which for a large file is its sha256, the size, and where the bytes are), and
`http_get` fetches them (GET with `Range` to go on from a partial file; retries that resume within
one run). Both send the token from the usual places (HF_TOKEN, `hf auth login`'s file), and both
refuse to touch the network under HF_HUB_OFFLINE.

Why not `hf_hub_download`: from huggingface_hub 1.x it writes each attempt to a temporary file of a
new name and deletes it when the attempt fails, so a pull stopped half-way (Ctrl+C, a dropped
network, a full disk) would start again from nothing. Here the partial file is the library's own
(store.py), so the next pull asks only for the rest.

huggingface_hub reads its settings from the environment when first imported; the ones a pull needs
are read here on every pull instead, so that a change (the screen's, a test's) always counts:
HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from .. import __version__
from .errors import PullStopped
from .hub_errors import explain

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 10.0  # seconds: huggingface_hub's own default for both waits
CHUNK = 1 << 20  # progress (and a Cancel) every MiB, not every 10 MiB as huggingface_hub does
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads a yes in its variables

Progress = Callable[[int, int | None], None]  # (bytes in the partial file, the file's size if known)


@dataclass(frozen=True)
class RemoteFile:
    """A file on the Hub, as its HEAD request describes it."""

    repo: str
    file: str
    commit: str  # the repository's commit the revision resolved to
    etag: str
    size: int | None
    url: str  # where the bytes are: the Hub's redirect target (a CDN), or the resolve URL itself
    headers: dict[str, str] = field(repr=False)  # what the GET sends (no token to another host)

    @property
    def sha256(self) -> str | None:
        """A large (LFS) file's ETag is the sha256 of its content: what the Hub publishes for it."""
        return self.etag if _SHA256.fullmatch(self.etag) else None


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _seconds(variable: str) -> float:
    try:
        value = float(os.environ.get(variable, ""))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def _huggingface_hub() -> Any:
    """Import it on first use (a third of a second; `models list` never needs it). Telemetry off,
    unless the player turned it on: it would cost a request to the Hub before the first download."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub.file_download

    # It writes its warnings (a retry, say) to stderr with a handler of its own; the terminal is the
    # game's (the screen, the progress bar). They still reach the game's log through the root logger.
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        if type(handler) is logging.StreamHandler:
            hub_logger.removeHandler(handler)
    return huggingface_hub.file_download


def locate(repo: str, file: str, revision: str = "main") -> RemoteFile:
    """Ask the Hub where `file` of `repo` is, and how big; a clear error when it cannot say."""
    where = f"{repo}/{file}"
    if offline():
        raise explain(_offline_error(), where=where, endpoint=endpoint())
    hub = _huggingface_hub()
    url = hub.hf_hub_url(repo, file, revision=revision, endpoint=endpoint())
    try:
        found = hub.get_hf_file_metadata(
            url,
            timeout=_seconds("HF_HUB_ETAG_TIMEOUT"),
            library_name="simularity",
            library_version=__version__,
            endpoint=endpoint(),
        )
        if not found.commit_hash or not found.etag:
            raise hub.FileMetadataError(f"{url} answered without the Hub's X-Repo-Commit and ETag headers")
    except Exception as error:  # huggingface_hub's and httpx's many kinds: explain() sorts them
        raise explain(error, where=where, endpoint=endpoint()) from None
    headers = hub.build_hf_headers(library_name="simularity", library_version=__version__)
    if urlsplit(found.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the Hub
    return RemoteFile(repo, file, found.commit_hash, found.etag, found.size, found.location, headers)


def fetch(remote: RemoteFile, partial: Path, progress: Progress) -> None:
    """Append the rest of `remote`'s bytes to `partial` (made when missing). `progress` is called
    for every MiB; an exception it raises (PullStopped: Cancel) stops the transfer, keeping what came."""
    if offline():
        raise explain(_offline_error(), where=f"{remote.repo}/{remote.file}", endpoint=endpoint())
    hub = _huggingface_hub()
    # Read by http_get from these module globals at call time; the environment's values were
    # frozen when huggingface_hub was imported.
    hub.constants.HF_HUB_DOWNLOAD_TIMEOUT = _seconds("HF_HUB_DOWNLOAD_TIMEOUT")
    hub.constants.DOWNLOAD_CHUNK_SIZE = CHUNK
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        with partial.open("ab") as handle:  # appends: a stopped pull's bytes stay, the rest follows
            hub.http_get(
                remote.url,
                handle,
                resume_size=handle.tell(),
                headers=dict(remote.headers),
                expected_size=remote.size,
                displayed_filename=remote.file,
                tqdm_class=cast(Any, functools.partial(_ProgressBar, progress)),
            )
    except PullStopped:  # Cancel: not a failure to explain
        raise
    except Exception as error:
        raise explain(error, where=f"{remote.repo}/{remote.file}", endpoint=endpoint(), partial=partial) from None


def _offline_error() -> Exception:
    from huggingface_hub.errors import OfflineModeIsEnabled

    return OfflineModeIsEnabled("HF_HUB_OFFLINE is set")


class _ProgressBar:
    """What huggingface_hub's `tqdm_class` is asked to be: a context manager counting bytes.
    Instead of drawing a bar of its own it reports to `progress` (the terminal's bar, the screen's)."""

    def __init__(self, progress: Progress, *, total: int | None = None, initial: int = 0, **_ignored: object) -> None:
        self.progress = progress
        self.total = total
        self.n = initial
        progress(self.n, total)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        self.progress(self.n, self.total)
