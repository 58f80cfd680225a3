"""`simularity bench startup`: how soon a player sees the game, and how soon they can play.

Each run starts the real `simularity` on a pseudo-terminal, as a player's terminal would, and
times two moments from the process's start: the first frame (the screen's first text is drawn)
and ready to play (the play screen's input prompt is drawn, so the model is loaded). With the
model cached, and without: an empty cache, where the embedded model is first joined from its
chunks in the background. The baseline, measured in the same run, is the first frame of a bare
Textual app (one label) started the same way: Python's and Textual's own start-up.

The pseudo-terminal answers as a common terminal without kitty graphics would: it reports its
size in pixels, and answers the device-attributes query (no sixel). The kitty-graphics query goes
unanswered, as in most terminals, and costs textual-image its 0.1 s time-out.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from ..errors import UserFacingError
from ..scenario.loader import bundled_packs_dir
from ..settings import Settings

FIRST_FRAME = b"Simularity"  # the header's title, or the loading screen's logo
READY = b"Say something as"  # the play screen's input placeholder
BARE_APP = """
from textual.app import App
from textual.widgets import Label


class Bare(App):
    def compose(self):
        yield Label("Simularity")


Bare().run()
"""
TIMEOUT_S = 300.0
ROWS, COLUMNS, CELL_WIDTH, CELL_HEIGHT = 30, 100, 10, 20
DEVICE_ATTRIBUTES_QUERY = b"\x1b[c"
DEVICE_ATTRIBUTES = b"\x1b[?62;22c"  # a VT220 with ANSI colour, as xterm answers (4 would mean sixel)


def run_startup_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    del settings  # the game reads the same settings file itself
    pack = bundled_packs_dir() / "lighthouse"
    game = [sys.executable, "-m", "simularity_tui", "--pack", str(pack), "--new", "--graphics", "none"]
    if model_override is not None:
        game += ["--model", str(model_override)]
    threads = getattr(args, "threads", None)  # model options left out are absent (argparse.SUPPRESS)
    if threads is not None:
        game += ["--threads", str(threads)]
    bare: list[tuple[float, float]] = []
    cached: list[tuple[float, float]] = []
    uncached: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="simularity-bench-") as scratch:
        base_env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
        base_env["SIMULARITY_CONFIG_DIR"] = str(Path(scratch) / "config")
        base_env["SIMULARITY_DATA_DIR"] = str(Path(scratch) / "data")
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}…", file=sys.stderr)
            bare.append(_time_start([sys.executable, "-c", BARE_APP], base_env, ready=FIRST_FRAME))
            cached.append(_time_start(game, base_env, ready=READY))
            if model_override is None:  # only the embedded model is prepared into the cache
                empty_cache = dict(base_env, SIMULARITY_CACHE_DIR=str(Path(scratch) / f"cache-{round_}"))
                uncached.append(_time_start(game, empty_cache, ready=READY))
    baseline_first_frame = statistics.median(frame for frame, _ in bare)
    cached_first_frame = statistics.median(frame for frame, _ in cached)
    figures: dict[str, object] = {
        "baseline_first_frame_s": baseline_first_frame,
        "cached_first_frame_s": cached_first_frame,
        "cached_ready_s": statistics.median(ready for _, ready in cached),
        "first_frame_ratio": cached_first_frame / baseline_first_frame,
        "rounds": {"baseline": bare, "cached": cached, "uncached": uncached},
    }
    if uncached:
        figures["uncached_first_frame_s"] = statistics.median(frame for frame, _ in uncached)
        figures["uncached_ready_s"] = statistics.median(ready for _, ready in uncached)
    _report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _report(figures: dict[str, object]) -> None:
    def ms(key: str) -> str:
        value = figures.get(key)
        return f"{value * 1000:,.0f} ms" if isinstance(value, float) else "–"

    print("                      first frame   ready to play")
    print(f"bare Textual app      {ms('baseline_first_frame_s'):>11}   –")
    print(f"model cached          {ms('cached_first_frame_s'):>11}   {ms('cached_ready_s'):>13}")
    print(f"model not cached      {ms('uncached_first_frame_s'):>11}   {ms('uncached_ready_s'):>13}")
    print(f"first frame / bare Textual app: {figures['first_frame_ratio']:.2f} (medians)")


def _time_start(argv: list[str], env: dict[str, str], *, ready: bytes) -> tuple[float, float]:
    """(seconds to the first frame, seconds until `ready` shows), from the process's start."""
    master, slave = os.openpty()
    size = struct.pack("HHHH", ROWS, COLUMNS, COLUMNS * CELL_WIDTH, ROWS * CELL_HEIGHT)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    output, first_frame, ready_at, answered = b"", None, None, 0
    try:
        while time.perf_counter() - started < TIMEOUT_S:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break  # the program closed the terminal
            if not chunk:
                break
            output += chunk
            while output.count(DEVICE_ATTRIBUTES_QUERY) > answered:
                os.write(master, DEVICE_ATTRIBUTES)
                answered += 1
            now = time.perf_counter() - started
            if first_frame is None and FIRST_FRAME in output:
                first_frame = now
            if ready_at is None and ready in output:
                ready_at = now
            if first_frame is not None and ready_at is not None:
                break
    finally:
        process.terminate()
        process.wait(30)
        os.close(master)
    if first_frame is None or ready_at is None:
        tail = output[-2000:].decode("utf-8", "replace")
        missing = "first frame" if first_frame is None else "input prompt"
        raise UserFacingError(f"the game did not show its {missing}; its last output: {tail!r}")
    return first_frame, ready_at
