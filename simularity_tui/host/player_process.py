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
# Window changes are set on the game's terminal at most this often (the latest one): a redraw per
# 50 ms follows a window being dragged smoothly, and a storm of them costs the game 20 layouts a second.
_RESIZE_INTERVAL_S = 0.05


# The largest terminal a player gets, whatever their client claims. The game lays out and keeps every
# cell of its screen: at 65535 x 65535 (all SSH's numbers fit in once clamped to 16 bits) it grows past
# 6 GiB at full CPU and never reaches its signal handlers. 1000 x 500 is beyond any real window.
MAX_COLUMNS = 1000
MAX_ROWS = 500
# The largest cell in pixels: the game sizes its pictures in pixels from the cell size (pixel size /
# cells), so a client claiming 65535-pixel cells would have it scale the stage to gigapixels. A large
# font on a 4K screen is about 40 x 80.
MAX_CELL_WIDTH = 64
MAX_CELL_HEIGHT = 128


@dataclass(frozen=True)
class TermSize:
    """A window size as the client sent it (SSH allows 32 bits for each number)."""

    columns: int
    rows: int
    pixel_width: int = 0
    pixel_height: int = 0

    def packed(self) -> bytes:
        """`struct winsize` for TIOCSWINSZ, clamped to a sane terminal: at most MAX_COLUMNS x MAX_ROWS,
        the pixel sizes scaled with the cells they cover (so the cell size the game derives stays as the
        client meant it) and at most MAX_CELL_WIDTH x MAX_CELL_HEIGHT per cell. A client that sends 0x0
        (some do before the window exists) still gets a usable screen."""
        columns = _clamp(self.columns, 80, MAX_COLUMNS)
        rows = _clamp(self.rows, 24, MAX_ROWS)
        return struct.pack(
            "HHHH",
            rows,
            columns,
            _pixels(self.pixel_width, self.columns, columns, MAX_CELL_WIDTH),
            _pixels(self.pixel_height, self.rows, rows, MAX_CELL_HEIGHT),
        )


def _clamp(cells: int, default: int, most: int) -> int:
    return min(cells, most) if cells > 0 else default


def _pixels(pixels: int, cells_sent: int, cells_kept: int, most_per_cell: int) -> int:
    """The pixel size for `cells_kept` cells, at the client's cell size; 0 (unknown) when it makes none."""
    if pixels <= 0 or cells_sent <= 0:
        return 0
    scaled = pixels * cells_kept // cells_sent
    return min(scaled, most_per_cell * cells_kept, 0xFFFF)


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

    def __init__(self, process: asyncio.subprocess.Process, master: int, size: TermSize) -> None:
        self.process = process
        self.master = master
        self._size = size.packed()  # what the terminal is set to
        self._pending_size: bytes | None = None  # the latest size the player sent, not set yet
        self._resize_timer: asyncio.TimerHandle | None = None
        self._last_resize = float("-inf")
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
        return cls(process, master, size)

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
        """Follow the player's window: at most one size every `_RESIZE_INTERVAL_S`, the latest.

        Each size set sends SIGWINCH and the game lays its whole screen out again, so a client sending
        window changes as fast as it can (a resize storm) must not cost one layout per message: sizes
        that come while one was just set wait, and only the last of them is set."""
        self._pending_size = size.packed()
        if self._resize_timer is not None or self._closed:
            return  # the timer sets the latest size when it fires
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_resize + _RESIZE_INTERVAL_S - loop.time())
        self._resize_timer = loop.call_later(delay, self._apply_resize)

    def _apply_resize(self) -> None:
        self._resize_timer = None
        packed, self._pending_size = self._pending_size, None
        if packed is None or self._closed or packed == self._size:
            return
        self._last_resize = asyncio.get_running_loop().time()
        self._size = packed
        # The kernel sends SIGWINCH to the game's foreground process group: the game redraws.
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, packed)

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
        if self._resize_timer is not None:
            self._resize_timer.cancel()
        self._readable.set()
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


def _take_terminal() -> None:
    """In the child, after setsid(): make the pty (its stdin) the session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
