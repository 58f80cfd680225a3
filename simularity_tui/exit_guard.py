"""The game ends when it is told to, whatever its terminal does.

A closed terminal (an SSH player who drops: `simularity host` sends SIGHUP) or a SIGTERM ends the
game as Ctrl+Q does, so that it writes its KV state; Python's default would just die. But ending
cleanly needs the terminal: Textual's last frames go through a writer thread, and when the terminal
has gone that thread may be gone too, with its queue full, so that the app blocks for ever on one
more write (seen: 48 minutes after SIGHUP and SIGTERM, the main thread in `LinuxDriver.close`). So a
watchdog ends the process hard: a few seconds after the exit save is written, or, when the save
never comes (the event loop is blocked), a little longer after the signal. The story itself is on
disk already (it is saved after every line); only the KV state file can be missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable

EXIT_AFTER_SAVE_S = 3.0
EXIT_AFTER_SIGNAL_S = 10.0  # within `simularity host`'s default grace before SIGTERM

log = logging.getLogger("simularity")


class ExitGuard:
    def __init__(self, exit_app: Callable[[], object]) -> None:
        self._exit_app = exit_app
        self._lock = threading.Lock()
        self._deadline: float | None = None  # monotonic time of the hard exit, once armed

    def install(self, terminal: int = 0) -> None:
        """Handle SIGHUP and SIGTERM, and treat the terminal on descriptor `terminal` hanging up as
        a SIGHUP: a terminal that is not the game's controlling one (a pty a test or a multiplexer
        opened) goes away without the kernel's signal, and the game must notice all the same."""
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        if os.isatty(terminal):
            threading.Thread(target=_watch_hangup, args=(terminal,), name="terminal-watch", daemon=True).start()

    def exit_saved(self, status: int = 0) -> None:
        """The game has written its exit save: whatever happens next, the process ends soon."""
        self._arm(EXIT_AFTER_SAVE_S, status)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._arm(EXIT_AFTER_SIGNAL_S, 128 + signum)
        try:
            loop = asyncio.get_running_loop()  # the handler runs on the main thread, inside the app's loop
        except RuntimeError:  # before the app started or after it ended: nothing left to save
            raise SystemExit(128 + signum) from None
        loop.call_soon_threadsafe(self._exit_app)

    def _arm(self, seconds: float, status: int) -> None:
        """Exit with `status` in `seconds`, unless an earlier hard exit is armed already."""
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._deadline is not None and self._deadline <= deadline:
                return
            self._deadline = deadline
        timer = threading.Timer(seconds, self._exit_hard, args=(deadline, status))
        timer.daemon = True
        timer.start()

    def _exit_hard(self, deadline: float, status: int) -> None:
        with self._lock:
            if self._deadline != deadline:
                return  # an earlier one was armed since (and has fired, or will)
        log.warning("the game did not end by itself: exiting now (status %d)", status)
        os._exit(status)


def _watch_hangup(terminal: int) -> None:
    poller = select.poll()
    poller.register(terminal, select.POLLHUP)  # POLLHUP and POLLERR only: input is Textual's to read
    while True:
        events = poller.poll()
        if any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _fd, mask in events):
            log.info("the terminal hung up")
            os.kill(os.getpid(), signal.SIGHUP)  # handled as any hang-up, on the main thread
            return
