"""What huggingface_hub's and httpx's exceptions mean to a player pulling a model, in words.

Each becomes a `ModelLibraryError` saying what happened (naming the file and the server) and what
to do; a pull never ends in a traceback. `CutShort` is the one after which the partial file is
worth nothing (the server's copy is shorter than it said), so the pull deletes it.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelLibraryError

if TYPE_CHECKING:  # imported with huggingface_hub, when a pull starts: not when the game starts
    import httpx

_RESUMES = "Pull again: it goes on from where it stopped."
_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # EFBIG: a file size limit (ulimit -f)


class CutShort(ModelLibraryError):
    """The server ended the file early while saying it was complete: its copy is not worth resuming."""


def explain(error: Exception, *, where: str, endpoint: str, partial: Path | None = None) -> ModelLibraryError:
    """`error`, raised while pulling `where` (OWNER/NAME/FILE) from `endpoint`, as the player reads it."""
    import httpx
    from huggingface_hub import errors as hub

    repo = "/".join(where.split("/")[:2])
    if isinstance(error, hub.OfflineModeIsEnabled):
        return ModelLibraryError(
            f"Cannot pull {where}: HF_HUB_OFFLINE is set, so nothing is downloaded",
            hint="Unset HF_HUB_OFFLINE to download; `simularity models list` shows what is installed already.",
        )
    if isinstance(error, hub.HfHubHTTPError):
        return _http_error(error, where=where, repo=repo, endpoint=endpoint)
    if isinstance(error, hub.FileMetadataError):
        return ModelLibraryError(
            f"{endpoint} does not answer as the Hugging Face Hub does ({error})",
            hint="Check HF_ENDPOINT (unset, it is https://huggingface.co) and any proxy between you and it.",
        )
    if isinstance(error, httpx.HTTPError):
        return _network_error(error, where=where, endpoint=endpoint, partial=partial)
    if isinstance(error, OSError):
        return _disk_error(error, where=where, endpoint=endpoint, partial=partial)
    return ModelLibraryError(f"Pulling {where} from {endpoint} failed: {type(error).__name__}: {error}", hint=_RESUMES)


def _http_error(error: Exception, *, where: str, repo: str, endpoint: str) -> ModelLibraryError:
    from huggingface_hub import errors as hub

    status = getattr(getattr(error, "response", None), "status_code", 0)
    if isinstance(error, hub.GatedRepoError):
        return ModelLibraryError(
            f"{repo} is gated on {endpoint}: its owners ask you to accept their terms first",
            hint=f"Accept them on {endpoint}/{repo}, then log in (`hf auth login`) or set HF_TOKEN to a read token.",
        )
    if isinstance(error, hub.RepositoryNotFoundError):
        return ModelLibraryError(
            f"{endpoint} has no repository {repo} (or it is private)",
            hint="Check the name (OWNER/NAME, as on the Hub); a private repository needs HF_TOKEN.",
        )
    if isinstance(error, hub.RevisionNotFoundError):
        return ModelLibraryError(f"{repo} has no such revision on {endpoint}", hint="Pull its main revision.")
    if isinstance(error, hub.RemoteEntryNotFoundError) or status == 404:
        return ModelLibraryError(
            f"{repo} on {endpoint} has no file {where.removeprefix(repo + '/')}",
            hint="The repository's page lists its files; `simularity models list` shows the catalogue's.",
        )
    if status in (401, 403):
        return ModelLibraryError(
            f"{endpoint} refused {where} (HTTP {status})",
            hint="Log in (`hf auth login`) or set HF_TOKEN to a token that may read this repository.",
        )
    if status == 416:  # the partial file is longer than the file is now
        return CutShort(f"{endpoint} cannot go on with {where} from where it stopped (HTTP 416)", hint=_RESUMES)
    return ModelLibraryError(f"{endpoint} failed to serve {where} (HTTP {status})", hint="Try later. " + _RESUMES)


def _network_error(error: httpx.HTTPError, *, where: str, endpoint: str, partial: Path | None) -> ModelLibraryError:
    import httpx

    kept = _kept(partial)
    if isinstance(error, httpx.TimeoutException):
        return ModelLibraryError(
            f"{endpoint} stopped answering while pulling {where}{kept}",
            hint=f"Check the network. {_RESUMES} HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT set how long "
            "to wait (10 s each).",
        )
    if isinstance(error, httpx.ConnectError):
        return ModelLibraryError(
            f"Cannot reach {endpoint} to pull {where}{kept} ({error or 'no connection'})",
            hint="Check the network connection (or HF_ENDPOINT, when a mirror is meant). " + _RESUMES,
        )
    return ModelLibraryError(f"The connection to {endpoint} broke while pulling {where}{kept}", hint=_RESUMES)


def _disk_error(error: OSError, *, where: str, endpoint: str, partial: Path | None) -> ModelLibraryError:
    folder = partial.parent if partial is not None else None
    if error.errno in _DISK_FULL:
        return ModelLibraryError(
            f"No room to write {where}{_kept(partial)}: {error.strerror} (in {folder})",
            hint="Free some disk space, or move the library with SIMULARITY_DATA_DIR; then pull again (it goes on "
            "from where it stopped), or `simularity models rm` it.",
            path=folder,
        )
    if error.errno is not None:
        return ModelLibraryError(f"Cannot write {where} in {folder}: {error.strerror}", path=folder)
    # http_get's own check: the body ended before the size the server announced
    return CutShort(
        f"{endpoint} sent only part of {where}: the file ended early",
        hint="The incomplete download was deleted; pull again. If it happens again, the server's copy is damaged.",
    )


def _kept(partial: Path | None) -> str:
    try:
        size = partial.stat().st_size if partial is not None else 0
    except OSError:
        return ""
    return f" ({size / 1e6:,.1f} MB of it kept)" if size else ""
