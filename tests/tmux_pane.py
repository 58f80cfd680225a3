"""A real terminal for tests: one tmux session on a private server (100x30 unless told), read with capture-pane.

The command runs under bash; its exit status is written to a file, and the pane stays open after
it (so what it printed last can still be read).
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path


class TmuxPane:
    def __init__(self, status_file: Path, exit_timeout: float = 10.0, size: tuple[int, int] = (100, 30)) -> None:
        self.socket = f"simularity-test-{uuid.uuid4().hex[:8]}"
        self.status_file = status_file
        self.exit_timeout = exit_timeout
        self.size = size

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def run(self, command: str, *, before: str = "") -> None:
        """Start `command` (shell text); `before` runs first, in the same shell."""
        script = f"{before}{command}; echo $? > {shlex.quote(str(self.status_file))}; sleep 600"
        columns, rows = self.size
        self.tmux("new-session", "-d", "-x", str(columns), "-y", str(rows), "bash", "-c", script)

    def text(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, predicate: str | Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if predicate(screen) if callable(predicate) else predicate in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out; the screen shows:\n{self.text()}")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def exit_status(self) -> int:
        deadline = time.monotonic() + self.exit_timeout
        while not self.status_file.exists() or not self.status_file.read_text().strip():
            assert time.monotonic() < deadline, f"the command did not exit; the screen shows:\n{self.text()}"
            time.sleep(0.1)
        return int(self.status_file.read_text())

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
