"""Native code's writes to standard error go to the log, printable; Python's keep the terminal.

llama.cpp and ggml print some messages straight to file descriptor 2, past the log callback that
engine/native.py installs: a grammar that does not parse is printed whole, with whatever names it
quotes. In a terminal those bytes would be executed (a title change, a clipboard write), and in the
TUI they would scribble over the screen. So descriptor 2 becomes a pipe whose lines are logged as
printable text, while `sys.stderr` (messages and hints, already printable) and `sys.__stderr__`
(where Textual draws the screen) keep the real standard error on a descriptor of their own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading

from .untrusted_text import printable

log = logging.getLogger("simularity.native")
_installed = False
_real: int | None = None  # the real standard error, while descriptor 2 is the pipe


def route_native_stderr() -> None:
    """Install the pipe (once per process), before anything starts the TUI or loads llama.cpp."""
    global _installed, _real
    if _installed:
        return
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no standard error at all, or no descriptors left: nothing to protect
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    buffered = io.BufferedWriter(io.FileIO(real, "w"))
    stream = _Terminal(buffered, encoding=encoding, errors="backslashreplace", line_buffering=True)
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = stream
    setattr(sys, "__stderr__", stream)  # noqa: B010 - typeshed marks it Final; Textual draws on it
    threading.Thread(target=_relay, args=(read_end,), name="native-stderr", daemon=True).start()
    _installed, _real = True, real


def restore_native_stderr() -> None:
    """Give descriptor 2 back its real standard error: before this process becomes another program
    (exec), which would otherwise write into a pipe nobody reads any more."""
    if _real is not None:
        os.dup2(_real, 2)


class _Terminal(io.TextIOWrapper):
    """Standard error, where a terminal may have gone away (a closed window, a dropped SSH player):
    nothing can be told to it then, so what cannot be written is dropped, not raised (an exit would
    otherwise end with status 120, Python's word for "could not flush standard error")."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            super().flush()


def _relay(read_end: int) -> None:
    pending = b""
    while chunk := os.read(read_end, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _log_line(line)
        if len(pending) > 65536:  # a "line" without end: logged in pieces, never held without bound
            _log_line(pending)
            pending = b""
    if pending:
        _log_line(pending)


def _log_line(raw: bytes) -> None:
    text = raw.decode("utf-8", errors="replace").rstrip()
    if text:
        log.warning("%s", printable(text))
