"""One player's game: the normal `simularity` TUI in its own process, on its own pseudo-terminal.

Each game runs as a new session whose controlling terminal is the pty, so that the kernel does what
a terminal would: a window-size change (TIOCSWINSZ on the master) sends SIGWINCH to the game, and the
game's process group can be hung up as a whole. The host keeps the master open until the game has
exited, so a game told to stop can still write its last frames (and save) instead of dying on EIO.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import signal
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("simularity.host")

_READ_SIZE = 65536


@dataclass(frozen=True)
class TermSize:
    columns: int
    rows: int
    pixel_width: int = 0
    pixel_height: int = 0

    def packed(self) -> bytes:
        """`struct winsize` for TIOCSWINSZ. The client chooses every number (SSH sends 32 bits): each is
        clamped to the 16 bits the kernel keeps, and a client that sends 0x0 (some do before the window
        exists) still gets a usable screen."""
        return struct.pack(
            "HHHH",
            _clamp(self.rows or 24, 1),
            _clamp(self.columns or 80, 1),
            _clamp(self.pixel_width, 0),
            _clamp(self.pixel_height, 0),
        )


def _clamp(value: int, lowest: int) -> int:
    return min(max(value, lowest), 0xFFFF)


# What a TERM the client sends may look like: terminfo names are short and plain ("xterm-256color",
# "screen.xterm-256color", "rxvt-unicode"). Anything else (a NUL, a control character, a path, a huge
# string) would reach the game's environment and terminfo lookups: it gets the common default.
_SAFE_TERM = re.compile(r"[A-Za-z0-9._+-]{1,64}")
DEFAULT_TERM = "xterm-256color"


def safe_term(term: str | None) -> str:
    return term if term is not None and _SAFE_TERM.fullmatch(term) else DEFAULT_TERM


@dataclass(frozen=True)
class PlayerDirs:
    """Where one player's game keeps its files: nothing of another player's is under them."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def game_environment(dirs: PlayerDirs, term: str | None) -> dict[str, str]:
    """The host's environment (PATH, GPU libraries, a backend's API key) with the player's terminal and
    directories, which replace any the host itself was given."""
    env = {key: value for key, value in os.environ.items() if not _describes_hosts_terminal(key)}
    env.update(
        TERM=safe_term(term),
        COLORTERM="truecolor",  # ssh does not carry COLORTERM; the terminals players use draw 24-bit colour
        SIMULARITY_CONFIG_DIR=str(dirs.config),
        SIMULARITY_DATA_DIR=str(dirs.data),
        SIMULARITY_CACHE_DIR=str(dirs.cache),  # KV state files and the game's log; the model is passed by path
        HOME=str(dirs.root),
    )
    env.setdefault("LANG", "C.UTF-8")
    return env


# What describes the terminal or desktop the host was started from, not the player's: a game that saw
# COLUMNS=80 would draw 80 columns whatever the player's window, one that saw KITTY_WINDOW_ID would
# send kitty graphics to any terminal. (SIMULARITY_API_KEY, a backend's key, does pass through.)
_HOST_TERMINAL = frozenset({"COLUMNS", "LINES", "TMUX", "TMUX_PANE", "STY", "WINDOWID", "DISPLAY", "WAYLAND_DISPLAY"})
_HOST_TERMINAL_PREFIXES = ("SSH_", "TERM_", "KITTY_", "WEZTERM_", "KONSOLE_", "ITERM_", "VTE_", "LC_TERMINAL", "XDG_")


def _describes_hosts_terminal(key: str) -> bool:
    return key in _HOST_TERMINAL or key.startswith(_HOST_TERMINAL_PREFIXES)


def game_command(model_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "simularity_tui", *model_args]


class PlayerProcess:
    """A game process on a pty: read its screen, type into it, resize it, hang it up."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable.set)
        self._closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], size: TermSize, cwd: Path) -> PlayerProcess:
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size.packed())
            os.set_blocking(master, False)
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own session and process group: hung up alone
                preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the game holds it now; when the game exits, reading the master ends
        return cls(process, master)

    async def read(self) -> bytes:
        """The game's next output; b"" once it has closed the terminal (exited)."""
        while not self._closed:
            try:
                data = os.read(self.master, _READ_SIZE)
            except BlockingIOError:
                self._readable.clear()
                await self._readable.wait()
                continue
            except OSError as error:
                if error.errno == errno.EIO:  # Linux: every slave descriptor is closed
                    return b""
                raise
            return data
        return b""

    async def write(self, data: bytes) -> None:
        """Type into the game; waits while the terminal's input buffer is full (a paste, a stuck game).

        That wait has no end if the game stopped reading its terminal: the server cancels it when the
        player's channel closes (server._play watches the channel itself), so a write never keeps a
        dropped player's game alive."""
        view = memoryview(data)
        while view and not self._closed:
            try:
                written = os.write(self.master, view)
            except BlockingIOError:
                await self._wait_writable()
                continue
            view = view[written:]

    async def _wait_writable(self) -> None:
        loop = asyncio.get_running_loop()
        self._writable.clear()
        loop.add_writer(self.master, self._writable.set)
        try:
            await asyncio.wait_for(self._writable.wait(), timeout=1.0)
        except TimeoutError:
            pass
        finally:
            loop.remove_writer(self.master)

    def resize(self, size: TermSize) -> None:
        # The kernel sends SIGWINCH to the game's foreground process group: the game redraws.
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size.packed())

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def hang_up(self, grace_s: float) -> int:
        """End the game as a closed terminal would: SIGHUP (it saves and exits), then harder.

        Each signal goes with SIGCONT, as the kernel's own hang-up does: a game stopped with SIGTSTP
        would otherwise keep SIGHUP and SIGTERM pending, lose its clean exit (and its save) and wait
        for SIGKILL. The caller keeps draining `read()` meanwhile, so the game never blocks on a full
        terminal."""
        for signum, wait_s in ((signal.SIGHUP, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if self.process.returncode is not None:
                break
            self.signal_group(signum)
            if signum != signal.SIGKILL:
                self.signal_group(signal.SIGCONT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout=wait_s)
            if self.process.returncode is None:
                log.warning("game %d did not exit within %.0f s of signal %d", self.pid, wait_s, signum)
        # Whatever the game left running in its group (nothing, normally) goes with it.
        self.signal_group(signal.SIGKILL)
        return await self.process.wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


def _take_terminal() -> None:
    """In the child, after setsid(): make the pty (its stdin) the session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
