"""`simularity bench host`: N players over SSH on loopback, all playing at once.

A real `simularity host` is started on a free port with N players; N SSH clients (bench/ssh_player.py)
each start the first bundled pack and play a few turns at the same time. Reported: each player's time
to first token as seen on their screen, and the memory of the host and its games.

With `--room 1` the players then share one story: a host with one room (`free` mode), which all N
join with `ssh HOST room bench`. Each turn one seated player sends a line, and what is timed is Enter
to the first character of the story's reply on every *other* player's screen; and what a player
costs there, beside a game with a model context of its own (measured in the same run, above).

With `--shared-server 1` the same is played a second time, in the same run, on a host with
`shared_server = true`: one llama-server the host starts, a slot per player, and games that load
no model. What one more player costs there is their game's own memory plus one slot of the
server's KV cache (from the GGUF's shape, as `simularity doctor` counts it); the rest of the
server's own memory (weights repacked for the CPU, compute buffers) is the same for any number of
players, and reported beside it.

Memory is counted with PSS (proportional set size): a page shared by k processes counts 1/k in each,
so the model's weights, mapped from one file by every game, count once in the total. RSS counts
them once per game, which is what a naive `ps` sum shows. What one more player costs is that
player's USS: the pages only their game holds (its KV cache, buffers, Python heap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import psutil
import tomli_w
from rich.console import Console
from rich.table import Table

from ..engine.gguf_file import inspect_gguf
from ..engine.kv_size import kv_cache_size
from ..engine.remote.config import without_credentials
from ..engine.remote.llama_server import free_port
from ..errors import UserFacingError
from ..settings import Settings
from .baseline import prepared_model_path
from .ssh_player import PlayerFigures, SshPlayer

T = TypeVar("T")
MAX_PLAYERS = 8
_LINES = [
    "Who are you?",
    "What is that light out there?",
    "Tell me about the cat.",
    "Is there any tea left?",
    "Why do you keep the lamp lit?",
    "Did you hear that noise?",
    "Can I wait out the storm here?",
    "What happened to the last keeper?",
]
_MIB = 1 << 20
READING_S = 2.0  # after the last reply, before the memory is measured


@dataclass
class Memory:
    host_pss: int
    players_pss: int
    players_rss: int
    players_anonymous: list[int]  # per game: what only it holds (KV cache, buffers, Python heap)
    server_pss: int = 0  # the host's own llama-server (shared_server), if any
    server_anonymous: int = 0  # its KV cache for every slot, and its buffers

    @property
    def total_pss(self) -> int:
        return self.host_pss + self.players_pss + self.server_pss

    @property
    def games(self) -> int:
        return len(self.players_anonymous)


def _rollup(process: psutil.Process) -> dict[str, int]:
    """Linux's /proc/PID/smaps_rollup in bytes (Rss, Pss, Anonymous, …); psutil's figures elsewhere."""
    try:
        text = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        info = process.memory_full_info()
        return {"Rss": info.rss, "Pss": getattr(info, "pss", info.uss), "Anonymous": info.uss}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def measure_memory(host_pid: int) -> Memory:
    """The host process and every game under it.

    A game's own cost is its anonymous memory: the model's weights and the libraries are file pages
    (mmapped), which the kernel keeps once for all games; USS would count them as the game's own
    while only one game maps them."""
    host = psutil.Process(host_pid)
    host_pss = _rollup(host).get("Pss", 0)
    pss = rss = server_pss = server_anonymous = 0
    anonymous: list[int] = []
    for child in host.children(recursive=True):
        try:
            fields = _rollup(child)
            is_server = child.name() == "llama-server"
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue
        if is_server:
            server_pss += fields.get("Pss", 0)
            server_anonymous += fields.get("Anonymous", 0)
            continue
        pss += fields.get("Pss", 0)
        rss += fields.get("Rss", 0)
        anonymous.append(fields.get("Anonymous", 0))
    return Memory(host_pss, pss, rss, anonymous, server_pss, server_anonymous)


def run_host_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    if not 1 <= args.players <= MAX_PLAYERS:
        raise UserFacingError(f"--players {args.players}: between 1 and {MAX_PLAYERS}", hint="e.g. --players 4")
    if args.turns < 1 or args.reply_tokens < 1:
        raise UserFacingError("--turns and --reply-tokens must be at least 1", hint="e.g. --turns 3")
    console = Console(stderr=True)
    # With a backend the games hold no weights: the server (not measured here) does.
    model = None if settings.model.backend else prepared_model_path(settings, model_override, console)
    shared = bool(args.shared_server)
    if shared and model is None:
        raise UserFacingError(
            "--shared-server starts llama-server on a model file; [model] backend is set",
            hint="Run it without --backend (and with --model FILE if you like).",
        )
    with tempfile.TemporaryDirectory(prefix="simularity-bench-host-") as directory:
        figures = asyncio.run(_bench(args, settings, model, Path(directory) / "per-game", console, shared=False))
        if args.room:
            console.print(f"Now {args.players} player(s) in one room…")
            figures["room"] = asyncio.run(_bench_room(args, settings, model, Path(directory) / "room", console))
        if shared:
            console.print("Now the same on one llama-server the host starts, a slot per player…")
            on_server = asyncio.run(_bench(args, settings, model, Path(directory) / "shared", console, shared=True))
            kept = ("players", "ttft_median_s", "ttft_max_s", "memory")
            figures["shared_server"] = {key: on_server[key] for key in kept}
    _report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _host_config(
    args: argparse.Namespace,
    settings: Settings,
    model: Path | None,
    root: Path,
    keys: dict[str, asyncssh.SSHKey],
    **extra: Any,
) -> int:
    """Write the bench's host.toml and the players' settings under `root`; the port it listens on."""
    root.mkdir()
    port = free_port()
    config = {
        "listen": "127.0.0.1",
        "port": port,
        "data_dir": str(root / "host"),
        **({"model": str(model)} if model is not None else {"backend": settings.model.backend}),
        "n_ctx": settings.model.n_ctx,
        "threads": settings.model.threads,
        "gpu_layers": settings.model.gpu_layers,
        "max_sessions": args.players,
        # Every player connects at once from 127.0.0.1: one address, all in its waiting room together.
        "max_unauthenticated_per_address": max(8, args.players),
        "max_unauthenticated": max(64, args.players),
        "hangup_grace_seconds": 5.0,
        "players": {name: {"keys": [key.export_public_key().decode().strip()]} for name, key in keys.items()},
        **extra,
    }
    (root / "host.toml").write_text(tomli_w.dumps(config))
    # Each player's own settings (and a room's): the reply budget of the bench, a half-cell stage.
    for directory in [*(f"players/{name}" for name in keys), *(f"rooms/{room}" for room in extra.get("rooms", {}))]:
        player_settings = root / "host" / directory / "config" / "settings.toml"
        player_settings.parent.mkdir(parents=True)
        player_settings.write_text(
            tomli_w.dumps({"game": {"max_reply_tokens": args.reply_tokens}, "ui": {"graphics": "halfcell"}})
        )
    return port


async def _start_host(root: Path) -> asyncio.subprocess.Process:
    """`simularity host` on the config under `root`, once it listens (stopped again if it does not)."""
    with (root / "host.log").open("wb") as host_log:  # the host writes to its own copy
        host = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simularity_tui", "host", "--config", str(root / "host.toml"),
            stdout=asyncio.subprocess.PIPE, stderr=host_log,
        )  # fmt: skip
    try:
        await _wait_listening(host, root / "host.log")
    except BaseException:
        await _stop_host(host)
        raise
    return host


async def _stop_host(host: asyncio.subprocess.Process) -> None:
    if host.returncode is None:
        host.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(host.wait(), timeout=30)
    except TimeoutError:
        host.kill()
        await host.wait()


async def _bench(
    args: argparse.Namespace, settings: Settings, model: Path | None, root: Path, console: Console, *, shared: bool
) -> dict[str, Any]:
    names = [f"player{number}" for number in range(1, args.players + 1)]
    keys = {name: asyncssh.generate_private_key("ssh-ed25519") for name in names}
    port = _host_config(args, settings, model, root, keys, **({"shared_server": True} if shared else {}))
    host = await _start_host(root)
    try:
        idle = measure_memory(host.pid)
        console.print(f"Host up on port {port}; {args.players} player(s) connecting…")
        players = await asyncio.gather(*(SshPlayer.connect(port, name, keys[name]) for name in names))
        started = time.perf_counter()
        await asyncio.gather(*(player.start_game() for player in players))
        console.print(f"All games open after {time.perf_counter() - started:.1f} s; playing {args.turns} turn(s)…")
        peak = _PeakMemory(host.pid)
        peak.start()
        results = await asyncio.gather(*(_play(player, args.turns) for player in players))
        peak.stop()
        playing = await _measured_as_they_read(players, lambda: measure_memory(host.pid))
    finally:
        await _stop_host(host)
    return _figures(args, settings, model, results, idle, playing, peak.highest)


async def _bench_room(
    args: argparse.Namespace, settings: Settings, model: Path | None, root: Path, console: Console
) -> dict[str, Any]:
    """N players in one room: Enter → the reply's first character on every other screen; memory."""
    from ..scenario import bundled_packs_dir

    names = [f"player{number}" for number in range(1, args.players + 1)]
    keys = {name: asyncssh.generate_private_key("ssh-ed25519") for name in names}
    room = {"pack": str(bundled_packs_dir() / "lighthouse"), "players": names, "mode": "free", "lines_per_minute": 60}
    port = _host_config(args, settings, model, root, keys, rooms={"bench": room})
    host = await _start_host(root)
    try:
        players = [await SshPlayer.connect(port, name, keys[name], command="room bench") for name in names]
        seated = [player for player, holds in zip(players, [await p.join_room() for p in players]) if holds]
        if not seated:
            raise UserFacingError("no player got a character in the bench's room", hint="Check the room's log.")
        console.print(f"{len(players)} in the room, {len(seated)} holding a character; playing {args.turns} turn(s)…")
        waits: list[float] = []
        for turn in range(args.turns):
            sender = seated[turn % len(seated)]
            line = f"{_LINES[turn % len(_LINES)]} ({turn + 1})"
            started = await sender.say_in_room(line)
            readers = [player for player in players if player is not sender] or [sender]
            seen = await asyncio.gather(*(reader.room_reply_seen(line) for reader in readers))
            waits += [at - started for at in seen]
            await asyncio.gather(*(player.room_quiet() for player in players))
        memory = await _measured_as_they_read(players, lambda: measure_room_memory(host.pid))
    finally:
        await _stop_host(host)
    clients = memory["clients_anonymous"]
    return {
        "players": len(players),
        "seated": len(seated),
        "reply_seen_median_s": statistics.median(waits),
        "reply_seen_max_s": max(waits),
        "memory": {**memory, "per_extra_player_bytes": statistics.median(clients) if clients else 0},
    }


def measure_room_memory(host_pid: int) -> dict[str, Any]:
    """The room's process (its model context), and each player's screen on it, under the host."""
    room_pss = room_anonymous = 0
    clients: list[int] = []
    for child in psutil.Process(host_pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            fields = _rollup(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue
        if "room serve" in command:
            room_pss, room_anonymous = fields.get("Pss", 0), fields.get("Anonymous", 0)
        elif "room join" in command:
            clients.append(fields.get("Anonymous", 0))
    return {"room_pss_bytes": room_pss, "room_anonymous_bytes": room_anonymous, "clients_anonymous": clients}


async def _measured_as_they_read(players: list[SshPlayer], measure: Callable[[], T]) -> T:
    """`measure()` as the players read their last reply, then their sessions closed: idle games have
    handed back what their replies only borrowed (engine/heap.py); the peak is reported apart."""
    await asyncio.sleep(READING_S)
    measured = measure()
    for player in players:
        await player.close()
    return measured


async def _play(player: SshPlayer, turns: int) -> PlayerFigures:
    figures = PlayerFigures(player.name)
    for turn in range(turns):
        figures.turns.append(await player.play_turn(_LINES[turn % len(_LINES)]))
    return figures


class _PeakMemory:
    """The highest total PSS seen while the players play, sampled twice a second."""

    def __init__(self, host_pid: int) -> None:
        self.host_pid = host_pid
        self.highest = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sample(self) -> None:
        while True:
            memory = await asyncio.to_thread(measure_memory, self.host_pid)
            self.highest = max(self.highest, memory.total_pss)
            await asyncio.sleep(0.5)


async def _wait_listening(host: asyncio.subprocess.Process, log: Path) -> None:
    assert host.stdout is not None
    try:
        line = await asyncio.wait_for(host.stdout.readline(), timeout=120)
    except TimeoutError:
        line = b""
    if b"listening on" not in line:
        raise UserFacingError(
            "the host did not start: " + (line.decode(errors="replace") + log.read_text(errors="replace")).strip(),
            hint="Run `simularity host --config FILE` yourself to see why.",
        )


def _figures(
    args: argparse.Namespace,
    settings: Settings,
    model: Path | None,
    results: list[PlayerFigures],
    idle: Memory,
    playing: Memory,
    peak_pss: int,
) -> dict[str, Any]:
    ttfts = [turn.ttft_s for result in results for turn in result.turns]
    per_player = statistics.mean(playing.players_anonymous) if playing.players_anonymous else 0
    slot_kv = 0
    if playing.server_pss and model is not None:
        shape = inspect_gguf(model).kv
        slot_kv = kv_cache_size(shape, settings.model.n_ctx, aside=False).total if shape is not None else 0
    per_player += slot_kv  # one more player: one more slot of the server's cache
    return {
        "settings": {
            "players": args.players,
            "turns": args.turns,
            "reply_tokens": args.reply_tokens,
            "model": str(model) if model is not None else without_credentials(settings.model.backend),
            "model_bytes": model.stat().st_size if model is not None else 0,
            "n_ctx": settings.model.n_ctx,
            "threads": settings.model.threads,
            "cpus": os.cpu_count(),
        },
        "players": [{"name": result.name, "turns": [asdict(turn) for turn in result.turns]} for result in results],
        "ttft_median_s": statistics.median(ttfts),
        "ttft_max_s": max(ttfts),
        "memory": {
            "host_idle_pss_bytes": idle.total_pss,
            "host_pss_bytes": playing.host_pss,
            "games_pss_bytes": playing.players_pss,
            "games_rss_bytes": playing.players_rss,
            "total_pss_bytes": playing.total_pss,
            "peak_total_pss_bytes": max(peak_pss, playing.total_pss),
            "server_pss_bytes": playing.server_pss,
            "server_anonymous_bytes": playing.server_anonymous,
            "server_kv_per_slot_bytes": slot_kv,
            "games": playing.games,
            "per_extra_player_bytes": per_player,
        },
    }


def _report(figures: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"{figures['settings']['players']} player(s) over SSH, {figures['settings']['turns']} turn(s)")
    for column in ("player", "TTFT median", "TTFT max", "turn median", "tok/s median"):
        table.add_column(column, justify="left" if column == "player" else "right")
    for player in figures["players"]:
        turns = player["turns"]
        table.add_row(
            player["name"],
            f"{statistics.median(t['ttft_s'] for t in turns) * 1000:.0f} ms",
            f"{max(t['ttft_s'] for t in turns) * 1000:.0f} ms",
            f"{statistics.median(t['turn_s'] for t in turns):.2f} s",
            f"{statistics.median(t['tokens_per_second'] for t in turns):.1f}",
        )
    console.print(table)
    memory, model_bytes = figures["memory"], figures["settings"]["model_bytes"]
    weights = f"model file {model_bytes / _MIB:.0f} MiB" if model_bytes else "the server's memory not counted"
    print(
        f"memory: host + {memory['games']} game(s): {memory['total_pss_bytes'] / _MIB:.0f} MiB PSS "
        f"(peak {memory['peak_total_pss_bytes'] / _MIB:.0f} MiB; games' RSS summed: "
        f"{memory['games_rss_bytes'] / _MIB:.0f} MiB; {weights})"
    )
    print(f"ttft: median {figures['ttft_median_s'] * 1000:.0f} ms, max {figures['ttft_max_s'] * 1000:.0f} ms")
    print(f"each extra player: {memory['per_extra_player_bytes'] / _MIB:.0f} MiB")
    room = figures.get("room")
    if room is not None:
        in_room = room["memory"]
        median, longest = room["reply_seen_median_s"] * 1000, room["reply_seen_max_s"] * 1000
        print(
            f"one room, {room['players']} player(s) ({room['seated']} holding a character): the reply on the other "
            f"screens after {median:.0f} ms median, {longest:.0f} ms max; "
            f"the room's process {in_room['room_pss_bytes'] / _MIB:.0f} MiB PSS"
        )
        print(
            f"each extra player in the room: {in_room['per_extra_player_bytes'] / _MIB:.0f} MiB "
            f"({in_room['per_extra_player_bytes'] / max(1, memory['per_extra_player_bytes']):.2f}x a game with its own "
            "model context)"
        )
    shared = figures.get("shared_server")
    if shared is not None:
        on_server = shared["memory"]
        print(
            f"shared llama-server: host + {on_server['games']} game(s) + server: "
            f"{on_server['total_pss_bytes'] / _MIB:.0f} MiB PSS "
            f"(server {on_server['server_pss_bytes'] / _MIB:.0f} MiB, of which its own "
            f"{on_server['server_anonymous_bytes'] / _MIB:.0f} MiB, "
            f"{on_server['server_kv_per_slot_bytes'] / _MIB:.0f} MiB of KV per slot); "
            f"ttft median {shared['ttft_median_s'] * 1000:.0f} ms, max {shared['ttft_max_s'] * 1000:.0f} ms"
        )
        print(
            f"each extra player on the shared server: {on_server['per_extra_player_bytes'] / _MIB:.0f} MiB "
            f"({on_server['per_extra_player_bytes'] / memory['per_extra_player_bytes']:.2f}x a game with its own "
            f"model context; ttft {shared['ttft_median_s'] / figures['ttft_median_s']:.2f}x)"
        )
