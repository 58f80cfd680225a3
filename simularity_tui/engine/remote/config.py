"""Where the model server is and how long to wait for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

DEFAULT_CONNECT_TIMEOUT = 10.0
# Between two pieces of an answer: a long prompt on a CPU server can take a minute before the first
# token, and llama-server sends nothing meanwhile (llama-cpp-python's server sends pings).
DEFAULT_READ_TIMEOUT = 180.0
# For one tokenize or detokenize request, which the story makes from the event loop (the session's
# surface is synchronous there): the whole interface waits on it, so it must be short. Tokenizing
# is cheap on every server; llama-cpp-python's server, though, queues it behind a reply it is
# streaming (one lock for the model), so a server shared by players may need more.
DEFAULT_TOKENIZE_TIMEOUT = 10.0

# The `user:password@` of a URL's authority (up to its last `@`, as urlsplit reads it).
_CREDENTIALS = re.compile(r"(?<=//)[^/?#\s]*@")


@dataclass(frozen=True)
class RemoteConfig:
    # The server's base URL, e.g. http://127.0.0.1:8080 (a trailing /v1 is accepted). Credentials
    # in it (`http://user:pass@host`) go with the requests only: `shown_url` is what a person sees.
    url: str
    api_key: str | None = field(default=None, repr=False)  # sent as `Authorization: Bearer KEY`
    # The context to plan prompts for. A server that reports its own (llama-server, vLLM, SGLang)
    # lowers it to that; llama-cpp-python's server does not say, so this must not exceed its n_ctx.
    n_ctx: int = 4096
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    tokenize_timeout: float = DEFAULT_TOKENIZE_TIMEOUT
    # The chat frame (chat_template.py): "auto" takes the template the server says it uses
    # (llama-server's /props; a server that does not say gets "raw"), or "raw", or a preset.
    template: str = "auto"
    # llama-server's slot to play in: on a server of several slots shared by players (`simularity
    # host`), each game keeps one, so that its prompt cache is its own. None: slot 0 of a one-slot
    # server, and the server's choice on one of several.
    slot: int | None = None
    # "completions": the prompt as text to /v1/completions; "chat": /v1/chat/completions, for servers
    # (cloud APIs) that offer nothing else (completions.py says how the story travels there).
    api: str = "completions"

    def __repr__(self) -> str:
        # Crash reports print locals: neither the key nor the URL's credentials may show there.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["url"] = without_credentials(self.url)
        return f"RemoteConfig({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    @property
    def base_url(self) -> str:
        """Where requests go, credentials included: never to be shown or stored."""
        return base_url(self.url)

    @property
    def shown_url(self) -> str:
        """The base URL without credentials: for messages, the status line and saves."""
        return without_credentials(self.base_url)

    @property
    def tokenizer_timeout(self) -> float:
        return min(self.read_timeout, self.tokenize_timeout)


def base_url(url: str) -> str:
    """`url` without trailing slashes or `/v1`: paths such as /v1/completions and /tokenize hang off it."""
    trimmed = url.strip().rstrip("/")
    return trimmed.removesuffix("/v1").rstrip("/")


def without_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URL in it left out."""
    return _CREDENTIALS.sub("", text)


def checked_url(url: str) -> str:
    """`url`, trimmed, if a model server can have it; else a ValueError that says why (without its credentials)."""
    url = url.strip()
    shown = without_credentials(url) if "//" in url else without_credentials("//" + url)[2:]  # user:pass@host:1
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)")
    try:
        parts.port  # noqa: B018 -- a port that is not a number, or out of range, raises here
    except ValueError as error:
        raise ValueError(f"{shown!r} has a bad port ({without_credentials(str(error))})") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{shown!r}: give the server's base URL, without ?query or #fragment")
    return url
