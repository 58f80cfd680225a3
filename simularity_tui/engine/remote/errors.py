"""Every way a model server can fail, said in words: which server, what happened, what to do.

Nothing from httpx or a server's body reaches the player raw: transport errors, HTTP statuses and
answers of the wrong shape all become a `RemoteBackendError` naming the URL (without its
credentials). What a server says is untrusted text: it goes through `printable`, so no escape
sequence in an error body reaches the terminal.
"""

from __future__ import annotations

import json

import httpx

from ...errors import UserFacingError
from ...untrusted_text import printable
from .config import without_credentials

_START_HINT = (
    "Start the server (e.g. `llama-server -m model.gguf --port 8080`) or check the URL "
    "(--backend, or [model] backend in settings.toml), then try again."
)
_RETRY_HINT = "Nothing was added to the story: try again once the server is back."
_SLOW_HINT = "It may be overloaded, or slow on a long prompt: try again, or raise [model] read_timeout."
_MESSAGE_LIMIT = 300


class RemoteBackendError(UserFacingError):
    """The model server could not be reached, failed, or answered something unusable."""

    status: int | None = None  # the HTTP status it answered with, where it answered


def transport_failure(
    error: httpx.HTTPError, url: str, doing: str, timeout: float, *, slow_hint: str | None = None
) -> RemoteBackendError:
    """A request that got no (complete) answer: refused, timed out, or cut off. `timeout` is the
    one the request had, said when it ran out, with `slow_hint` (else a hint about read_timeout)."""
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return RemoteBackendError(f"The model server at {url} did not accept a connection in time.", hint=_START_HINT)
    if isinstance(error, httpx.ConnectError):
        return RemoteBackendError(f"Cannot reach the model server at {url} ({_reason(error)}).", hint=_START_HINT)
    if isinstance(error, httpx.TimeoutException):
        return RemoteBackendError(
            f"The model server at {url} sent nothing for {timeout:g} s while {doing}.",
            hint=slow_hint or _SLOW_HINT,
        )
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return RemoteBackendError(
            f"The model server at {url} closed the connection while {doing} (did it stop or crash?).",
            hint=_RETRY_HINT,
        )
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return RemoteBackendError(f"{url} is not a URL a model server can have ({_said(error)}).", hint=_START_HINT)
    return RemoteBackendError(
        f"Talking to the model server at {url} failed while {doing}: {_said(error)}", hint=_RETRY_HINT
    )


def status_failure(status: int, body: str, url: str, path: str, doing: str) -> RemoteBackendError:
    """An HTTP error status, with what the server said about it."""
    said = server_message(body)
    detail = f"HTTP {status}" + (f": {said}" if said else "")
    if status in (401, 403):
        error = RemoteBackendError(
            f"The model server at {url} refused the API key ({detail}).",
            hint="Give the server's key: --api-key KEY, the SIMULARITY_API_KEY variable, or [model] api_key.",
        )
    elif status in (404, 405):
        error = RemoteBackendError(
            f"The server at {url} has no {path} ({detail}): is it an OpenAI-compatible model server?",
            hint="Point --backend at the server's base URL, e.g. http://127.0.0.1:8080 (llama-server, vLLM, SGLang).",
        )
    else:
        error = RemoteBackendError(
            f"The model server at {url} answered {detail} while {doing}.",
            hint="Check the server's log and its settings (context size, model), then try again. " + _RETRY_HINT,
        )
    error.status = status
    return error


def garbage(url: str, doing: str, sample: str) -> RemoteBackendError:
    """A 200 answer that is not what an OpenAI-compatible server sends."""
    shown = printable(" ".join(sample.split())[:120])
    return RemoteBackendError(
        f"The server at {url} answered something that is not an OpenAI-compatible reply while {doing}"
        + (f": {shown!r}" if shown else " (an empty answer)")
        + ".",
        hint="Check that --backend points at a model server (llama-server, vLLM, SGLang), not another web service.",
    )


def server_message(body: str) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or text;
    printable (control characters shown as symbols)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
        return printable(" ".join(body.split())[:_MESSAGE_LIMIT])
    found: object = data
    if isinstance(data, dict):
        found = data.get("error", data.get("detail", data.get("message", data)))
        if isinstance(found, dict):
            found = found.get("message", found)
    if isinstance(found, list) and found and isinstance(found[0], dict) and "msg" in found[0]:
        found = "; ".join(sample(item.get("msg")) for item in found)  # pydantic's validation errors
    return printable(" ".join(sample(found, _MESSAGE_LIMIT).split())[:_MESSAGE_LIMIT])


def sample(value: object, limit: int = 200) -> str:
    """The start of `value` as text, for an error: a JSON value too deeply nested to print is said so."""
    try:
        return str(value)[:limit]
    except RecursionError:
        return "(an answer nested too deeply to show)"


def _said(error: httpx.HTTPError) -> str:
    return printable(without_credentials(str(error) or type(error).__name__))


def _reason(error: httpx.HTTPError) -> str:
    text = _said(error)
    if "refused" in text.lower():
        return "connection refused: nothing listens there"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "unknown host name"
    return text
