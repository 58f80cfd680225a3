"""HTTP with a model server: clients with the key and timeouts, and JSON calls that fail in words.

Two kinds of client on purpose: tokenizing is synchronous in the session's surface (the story calls
it from plain code), so it uses a blocking client; generation streams on the event loop, so it uses
an async client, one per generation (the loop that runs it may change between generations, and a
connection per reply costs nothing next to the reply). The clients share one TLS context: httpx
builds a new one for each client otherwise, loading the CA bundle (about 30 ms on the event loop,
at every generation, whether the URL is https or not).

A request may carry its own timeout: tokenizing and detokenizing have a short one
(`RemoteConfig.tokenizer_timeout`), because the story waits for them on the event loop.
Requests go to `config.base_url`, credentials and all; everything said about them names
`config.shown_url`.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

from .config import RemoteConfig
from .errors import garbage, status_failure, transport_failure


def _headers(config: RemoteConfig) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


def _client_timeout(config: RemoteConfig) -> httpx.Timeout:
    return httpx.Timeout(config.read_timeout, connect=config.connect_timeout, pool=config.connect_timeout)


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # httpx's own default: certifi's bundle, SSL_CERT_FILE honoured


def sync_client(config: RemoteConfig) -> httpx.Client:
    return httpx.Client(
        base_url=config.base_url, headers=_headers(config), timeout=_client_timeout(config), verify=_tls()
    )


def async_client(config: RemoteConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=config.base_url, headers=_headers(config), timeout=_client_timeout(config), verify=_tls()
    )


_TOKENIZER_SLOW_HINT = (
    "Tokenizing is quick on a working server: it may be stalled, or (llama-cpp-python's server) busy "
    "writing someone else's reply. Nothing was added to the story: try again."
)


class Calls:
    """JSON requests to one server, each turning every failure into a `RemoteBackendError`."""

    def __init__(self, config: RemoteConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client

    @property
    def url(self) -> str:
        """The server's URL as a person may see it (no credentials)."""
        return self.config.shown_url

    def get(self, path: str, doing: str) -> Any:
        return self._answer(lambda: self.client.get(path), path, doing)

    def post(self, path: str, body: dict[str, Any], doing: str, *, quick: bool = False) -> Any:
        """`quick`: on the tokenizer's short timeout."""
        timeout = self._timeout(quick)
        return self._answer(lambda: self.client.post(path, json=body, timeout=timeout), path, doing, quick)

    def try_post(self, path: str, body: dict[str, Any], doing: str) -> Any | None:
        """As `post`, but None where the server has no such endpoint or refuses this body's shape
        (404, 405, 400, 422, 500): how a server's dialect is found out. Keys and transport still fail."""
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise transport_failure(error, self.url, doing, self.config.read_timeout) from None
        if response.status_code in (400, 404, 405, 422, 500):
            return None
        return self.decode(response, path, doing)

    async def apost(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any], doing: str, *, quick: bool = False
    ) -> Any:
        try:
            response = await client.post(path, json=body, timeout=self._timeout(quick))
        except httpx.HTTPError as error:
            raise self._failure(error, doing, quick) from None
        return self.decode(response, path, doing)

    def _answer(self, send: Any, path: str, doing: str, quick: bool = False) -> Any:
        try:
            response = send()
        except httpx.HTTPError as error:
            raise self._failure(error, doing, quick) from None
        return self.decode(response, path, doing)

    def _timeout(self, quick: bool) -> httpx.Timeout:
        config = self.config
        if not quick:
            return _client_timeout(config)
        connect = min(config.connect_timeout, config.tokenizer_timeout)
        return httpx.Timeout(config.tokenizer_timeout, connect=connect, pool=connect)

    def timed_out(self, doing: str, *, quick: bool) -> Exception:
        """The error of a request that was not answered in its time (waited for elsewhere)."""
        return self._failure(httpx.ReadTimeout(f"no answer while {doing}"), doing, quick)

    def _failure(self, error: httpx.HTTPError, doing: str, quick: bool) -> Exception:
        if quick:
            timeout, hint = self.config.tokenizer_timeout, _TOKENIZER_SLOW_HINT
            return transport_failure(error, self.url, doing, timeout, slow_hint=hint)
        return transport_failure(error, self.url, doing, self.config.read_timeout)

    def decode(self, response: httpx.Response, path: str, doing: str) -> Any:
        if response.status_code >= 400:
            raise status_failure(response.status_code, response.text, self.url, path, doing)
        try:
            return response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads: garbage
            raise garbage(self.url, doing, response.text) from None
