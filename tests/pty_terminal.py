"""A program on a real pseudo-terminal, every byte it writes to the terminal kept.

tmux and xterm show what a player sees; this shows what the terminal is sent, which tmux would
filter: kitty graphics commands, and any escape sequence that should never have been written.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence


class PtyProgram:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, columns: int = 100, rows: int = 30) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._master = master
        self.process = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env), start_new_session=True,
            close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the program closed the terminal
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = 90.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output
            if predicate(output):
                return output
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.output[-3000:].decode("utf-8", "replace")
        raise AssertionError(f"timed out (exit status {self.process.poll()}); the last output:\n{tail!r}")

    def send(self, data: bytes) -> None:
        os.write(self._master, data)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(5)
        os.close(self._master)
