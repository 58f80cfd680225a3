"""A stand-in for the Hugging Face Hub's file endpoints, on loopback, for the model library's tests.

It answers as the Hub does for a large (LFS) file: `HEAD /OWNER/NAME/resolve/REVISION/FILE` with a
302 to a CDN address (another host name: `localhost` for `127.0.0.1`) carrying `X-Repo-Commit`,
`X-Linked-Etag` (the sha256) and `X-Linked-Size`; a GET there honours `Range: bytes=N-` with a 206.
Errors carry the Hub's `X-Error-Code` (RepoNotFound, EntryNotFound, GatedRepo), which
huggingface_hub turns into its exceptions. Tests set how it misbehaves: stop sending after some bytes
until released (a stall, or a pull to interrupt), stall the HEAD, announce more bytes than it sends.
It counts every body byte it sends, to show that a resumed pull fetches only the rest.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "5ab33fa94d1d04e903623ae72c95d1696f09f9e8"
_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class HubFile:
    path: Path
    etag: str  # what the Hub publishes as its sha256 (a test may make it lie)
    size: int
    announce: int | None = None  # X-Linked-Size when it should differ from the size (a short copy)


@dataclass
class FakeHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)  # repo -> the token it wants
    hold_after: int | None = None  # stop sending a body after this many bytes, until `release`
    stall_head: bool = False
    sent: int = 0  # body bytes sent, all requests together
    log: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)  # method, path, Range, auth
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def add(self, repo: str, name: str, path: Path, *, etag: str | None = None, announce: int | None = None) -> str:
        digest = etag or hashlib.sha256(path.read_bytes()).hexdigest()
        self.files[(repo, name)] = HubFile(path, digest, path.stat().st_size, announce)
        return digest

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test's output is its own
        return

    def do_HEAD(self) -> None:
        self._log()
        if self.fake.stall_head:
            self.fake.release.wait()
            return
        found = self._resolve()
        if found is None:
            return
        (repo, name), hub_file = found
        self.send_response(302)
        self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/cdn/{repo}/{name}")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{hub_file.etag}"')
        self.send_header("ETag", '"0000000000000000000000000000000000000000"')  # the pointer's git hash
        self.send_header("X-Linked-Size", str(hub_file.announce or hub_file.size))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._log()
        parts = self.path.split("/")
        hub_file = self.fake.files.get(("/".join(parts[2:4]), "/".join(parts[4:]))) if parts[1] == "cdn" else None
        if hub_file is None:
            self._error(404, "EntryNotFound")
            return
        matched = _RANGE.match(self.headers.get("Range", ""))
        start = int(matched.group(1)) if matched else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{hub_file.size - 1}/{hub_file.size}")
        self.send_header("Content-Length", str(hub_file.size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._send_body(hub_file.path, start)

    def _send_body(self, path: Path, start: int) -> None:
        with path.open("rb") as handle:
            handle.seek(start)
            while block := handle.read(1 << 20):
                hold = self.fake.hold_after
                if hold is not None and self.fake.sent + len(block) > hold:
                    block = block[: max(0, hold - self.fake.sent)]
                    self._write(block)
                    self.fake.release.wait()  # a stall: nothing more until the test lets go
                    self.close_connection = True
                    return
                if not self._write(block):
                    return

    def _write(self, block: bytes) -> bool:
        try:
            self.wfile.write(block)
            self.wfile.flush()
        except OSError:  # the client went away (a stopped pull)
            self.close_connection = True
            return False
        self.fake.sent += len(block)
        return True

    def _resolve(self) -> tuple[tuple[str, str], HubFile] | None:
        parts = self.path.split("/")
        if len(parts) < 6 or parts[3] != "resolve":
            self._error(404, "RepoNotFound")
            return None
        repo, name = "/".join(parts[1:3]), "/".join(parts[5:])
        if not any(known == repo for known, _ in self.fake.files):
            self._error(404, "RepoNotFound")
            return None
        wanted = self.fake.gated.get(repo)
        if wanted is not None and self.headers.get("Authorization") != f"Bearer {wanted}":
            self._error(401, "GatedRepo")
            return None
        if (repo, name) not in self.fake.files:
            self._error(404, "EntryNotFound")
            return None
        return (repo, name), self.fake.files[(repo, name)]

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _log(self) -> None:
        self.fake.log.append((self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
