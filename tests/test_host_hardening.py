"""`simularity host` against hostile clients: huge windows, resize storms, floods of connections that
never log in. Each test starts a real host and talks to it over loopback with a real SSH client
(asyncssh, or OpenSSH's `ssh`); the helpers and the `keys` fixture come from test_host.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import resource
import signal
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import psutil  # type: ignore[import-untyped]
import pytest

from simularity_tui.bench.ssh_player import SshPlayer
from simularity_tui.errors import UserFacingError
from simularity_tui.host.config import load_host_config
from simularity_tui.host.player_process import TermSize
from simularity_tui.host.waiting_room import address_group

from . import test_host
from .test_host import (
    SHORT_REPLIES,
    Host,
    Keys,
    batch_ssh,
    connected_gate,
    disconnects,
    host_config,
    host_object,
    needs_ssh,
    save_of,
)

keys = test_host.keys  # the fixture: each test asks for it by name

MiB = 1 << 20
HUGE = (100_000, 100_000, 1_000_000, 2_000_000)  # columns, rows, pixel width, pixel height


# -- helpers --------------------------------------------------------------------------------------


def rss_anon(pid: int) -> int | None:
    """The process's anonymous resident memory in bytes: its own heap and buffers, not the mapped model."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return None


class GameMemory:
    """Watches the RssAnon of the host's games in a thread, keeping the peak.

    A game that passes `kill_above` is killed on the spot: on a host without the clamp it would grow to
    gigabytes on a machine other tests share."""

    def __init__(self, host: Host, kill_above: int = 1024 * MiB) -> None:
        self.host = host
        self.kill_above = kill_above
        self.peak = 0
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                for game in self.host.games():
                    used = rss_anon(game.pid) or 0
                    self.peak = max(self.peak, used)
                    if used > self.kill_above:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(game.pid, signal.SIGKILL)
                        self.killed.append(game.pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def window_size(game: psutil.Process) -> tuple[int, int, int, int]:
    """The game's terminal, as the game itself reads it: columns, rows, pixel width, pixel height."""
    terminal = game.terminal()
    assert terminal is not None, "the game has no controlling terminal"
    descriptor = os.open(terminal, os.O_RDONLY | os.O_NOCTTY)
    try:
        return winsize(descriptor)
    finally:
        os.close(descriptor)


def winsize(descriptor: int) -> tuple[int, int, int, int]:
    rows, columns, width, height = struct.unpack("HHHH", fcntl.ioctl(descriptor, termios.TIOCGWINSZ, bytes(8)))
    return columns, rows, width, height


class SizeWatch:
    """The sizes the game's terminal goes through, read about every millisecond in a thread."""

    def __init__(self, game: psutil.Process) -> None:
        self.seen = [window_size(game)]
        self._terminal = game.terminal()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        descriptor = os.open(self._terminal, os.O_RDONLY | os.O_NOCTTY)
        try:
            while not self._stop.wait(0.001):
                if (size := winsize(descriptor)) != self.seen[-1]:
                    self.seen.append(size)
        finally:
            os.close(descriptor)

    def stop(self) -> list[tuple[int, int, int, int]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


def wait_for_log(host: Host, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in host.log_text():
        assert time.monotonic() < deadline, f"the host never logged {text!r}:\n{host.log_text()[-3000:]}"
        time.sleep(0.05)


def the_game(host: Host, timeout: float = 30.0) -> psutil.Process:
    """The host's one game, once it is on its terminal (a child just forked has none yet)."""
    deadline = time.monotonic() + timeout
    while not ((games := host.games()) and games[0].terminal() is not None):
        assert time.monotonic() < deadline, "no game started"
        time.sleep(0.05)
    [game] = games
    return game


@contextlib.contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """This process's soft limit on open files, for the block (never above the hard limit)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, before[1]), before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


# -- window sizes ---------------------------------------------------------------------------------


def test_every_size_a_client_sends_is_clamped_to_a_sane_terminal() -> None:
    def sent(*size: int) -> tuple[int, int, int, int]:
        rows, columns, width, height = struct.unpack("HHHH", TermSize(*size).packed())
        return columns, rows, width, height

    assert sent(*HUGE) == (1000, 500, 10_000, 10_000)  # 10 x 20 px cells, as sent
    assert sent(100_000, 100_000) == (1000, 500, 0, 0)
    assert sent(120, 40, 1200, 800) == (120, 40, 1200, 800)  # a real window passes untouched
    assert sent(0, 0) == (80, 24, 0, 0)  # no window yet: a usable screen all the same
    assert sent(80, 24, 65535, 65535) == (80, 24, 80 * 64, 24 * 128)  # cells at most 64 x 128 px
    assert sent(1 << 31, 1 << 31, 1 << 31, 1 << 31) == (1000, 500, 1000, 500)
    assert sent(80, 24, 100, 10) == (80, 24, 100, 10)  # cells under a pixel: kept as the client said


@pytest.mark.ssh  # asyncssh logs in to `simularity host`, whose game plays on the model
@pytest.mark.model
def test_a_huge_window_and_a_resize_storm_leave_the_game_small_and_responsive(keys: Keys, tmp_path: Path) -> None:
    host = Host(tmp_path, host_config(keys, hangup_grace_seconds=10.0), SHORT_REPLIES)
    memory = GameMemory(host)
    try:
        asyncio.run(_huge_window_and_storm(host, keys))
        memory.stop()
        print(f"game RssAnon peak: {memory.peak / MiB:.0f} MiB")
        assert not memory.killed, (
            f"the game grew past 1 GiB of RssAnon and was killed (peak {memory.peak / MiB:.0f} MiB)"
        )
        assert memory.peak < 300 * MiB, f"the game's RssAnon peaked at {memory.peak / MiB:.0f} MiB"
    finally:
        memory.stop()
        for game in host.games():
            with contextlib.suppress(psutil.Error):
                game.kill()
        host.stop()


async def _huge_window_and_storm(host: Host, keys: Keys) -> None:
    conn = await asyncssh.connect(
        "127.0.0.1", host.port, username="alice", client_keys=[str(keys.private("alice"))],
        known_hosts=None, agent_path=None,
    )  # fmt: skip
    try:
        process = await conn.create_process(term_type="xterm-256color", term_size=HUGE, encoding=None)
        drained = asyncio.create_task(_drain_until(process, b"Library"))
        game = await asyncio.to_thread(the_game, host)
        assert window_size(game) == (1000, 500, 10_000, 10_000)  # clamped at login
        await asyncio.wait_for(drained, timeout=60)  # the library is drawn, 1000 x 500

        # The storm: every kind of size, huge and normal, one every few milliseconds for about a second
        # (sent all at once, the host would read them in one go anyway). The game never sees a size
        # above the clamp, and its terminal changes size at most every 50 ms, not 400 times.
        storm = [HUGE, (65_535, 65_535, 65_535, 65_535), (1, 1, 0, 0), (80, 24, 0, 0), (200, 60, 2000, 1200)]
        drained = asyncio.create_task(_drain_until(process, None))
        sizes = SizeWatch(game)
        started = time.monotonic()
        for index in range(400):
            process.change_terminal_size(*storm[index % len(storm)])
            await asyncio.sleep(0.0025)
        process.change_terminal_size(*HUGE)
        lasted = time.monotonic() - started
        await asyncio.sleep(0.5)
        seen = sizes.stop()
        drained.cancel()
        assert window_size(game) == (1000, 500, 10_000, 10_000)
        assert all(columns <= 1000 and rows <= 500 for columns, rows, _, _ in seen), seen
        print(f"the game's terminal changed size {len(seen) - 1} times in a storm of 401 sizes over {lasted:.2f} s")
        # The latest size, at most every 50 ms, while the storm lasts and the host catches up (0.5 s).
        assert len(seen) - 1 <= (lasted + 0.5) / 0.05 + 1, seen

        # Still alive and listening: back at a normal size, it redraws and answers keys.
        player = SshPlayer("alice", process, 100, 30)
        process.change_terminal_size(100, 30)
        await player.wait_for(lambda rows: any("Library" in row for row in rows), timeout=30)
        assert window_size(game)[:2] == (100, 30)
        await player.start_game()  # Enter: the lighthouse opens and is saved
        assert save_of(host, "alice").is_file()
        kv_state = save_of(host, "alice").with_suffix(".kv")  # written as the game exits
        kv_before = kv_state.stat().st_mtime_ns if kv_state.exists() else None

        # Hanging up ends it: the game saves and exits on its own, well within the grace period (10 s;
        # after it, SIGTERM then SIGKILL).
        hung_up = time.monotonic()
        conn.close()
        await asyncio.to_thread(wait_for_log, host, f"game {game.pid} of alice ended with status 0", 10.0)
        print(f"the game exited {time.monotonic() - hung_up:.1f} s after the hang-up")
        assert kv_state.exists() and kv_state.stat().st_mtime_ns != kv_before  # its exit save
    finally:
        conn.abort()


async def _drain_until(process: asyncssh.SSHClientProcess[bytes], text: bytes | None) -> None:
    """Read the game's screen (so that it never blocks on its terminal) until `text` has come."""
    tail = b""
    while data := await process.stdout.read(65536):
        tail = (tail + data)[-4096:]
        if text is not None and text in tail:
            return
    raise AssertionError(f"the session ended before {text!r} was drawn")


# -- connections that never log in ---------------------------------------------------------------


def test_the_caps_on_waiting_connections_are_config_keys_checked_with_their_line(tmp_path: Path, keys: Keys) -> None:
    config = tmp_path / "host.toml"
    player = f'[players.alice]\nkeys = ["{keys.public("alice")}"]\n'
    config.write_text(player)
    defaults = load_host_config(config).config
    assert (defaults.max_unauthenticated, defaults.max_unauthenticated_per_address) == (64, 8)
    assert defaults.login_timeout_seconds == 20
    for line, why in (
        ("max_unauthenticated = 0", "max_unauthenticated: Input should be greater than or equal to 1"),
        ("login_timeout_seconds = -1", "login_timeout_seconds: Input should be greater than 0"),
        ("max_unauthenticated_per_address = 100", "max_unauthenticated_per_address (100) is above max_unauthenticated"),
    ):
        config.write_text(f"{line}\n\n{player}")
        with pytest.raises(UserFacingError) as raised:
            load_host_config(config)
        assert why in raised.value.message, raised.value.message


def test_a_full_waiting_room_closes_the_idlest_connection_never_a_login_on_its_way(tmp_path: Path, keys: Keys) -> None:
    async def scenario() -> None:
        host = host_object(tmp_path, keys, max_unauthenticated=6, max_unauthenticated_per_address=3)
        player = connected_gate(host, "10.0.0.66")
        player.begin_auth("alice")  # logging in: it has said more than any idle connection
        flood = [connected_gate(host, "10.0.0.66") for _ in range(4)]
        # One address holds 3 at most: its idle connections go, oldest first; the player's login stays,
        # though it is older than all of them.
        assert [bool(disconnects(gate)) for gate in flood] == [True, True, False, False]
        assert not disconnects(player)
        assert "Too many connections waiting to log in" in disconnects(flood[0])[0]
        others = [connected_gate(host, f"10.0.1.{index}") for index in range(3)]
        # The room is full (6): a newcomer from anywhere closes the oldest of those not logging in yet.
        late = connected_gate(host, "10.0.2.1")
        assert disconnects(flood[2]) and not disconnects(player) and not disconnects(late)
        assert not any(disconnects(gate) for gate in others)
        assert host.waiting == 6
        # A connection that has logged in leaves the room, and so does one that ends.
        player.auth_completed()
        for gate in others:
            gate.connection_lost(None)
        player.connection_lost(None)
        assert host.waiting == 2  # flood[3] and late

        # A connection that has said nothing for seconds is idle: it goes first, though not the oldest.
        small = host_object(tmp_path, keys, max_unauthenticated=3, max_unauthenticated_per_address=3)
        young = connected_gate(small, "10.0.3.1")
        quiet = connected_gate(small, "10.0.4.1")
        quiet.connected_at -= 10
        connected_gate(small, "10.0.5.1")
        connected_gate(small, "10.0.5.1")
        assert disconnects(quiet) and not disconnects(young)

    asyncio.run(scenario())
    # One address, for the caps: an IPv6 /64 is one home's or one server's.
    assert address_group("2001:db8:1:2:aaaa::1") == address_group("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7" and address_group("192.0.2.7") == "192.0.2.7"


@needs_ssh
@pytest.mark.ssh
def test_a_real_player_gets_in_while_1100_connections_sit_idle(keys: Keys, tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"the hard limit on open files is {hard}: too few for 1,100 connections and more")
    with open_files_limit(1024):  # the host starts with the usual soft limit, and raises it itself
        host = Host(tmp_path, host_config(keys, max_auth_failures=1000), SHORT_REPLIES)
    sockets: list[socket.socket] = []
    try:
        # As if its hard limit were the usual 1024 too: the caps, not a big limit, keep the door open.
        psutil.Process(host.process.pid).rlimit(psutil.RLIMIT_NOFILE, (1024, 1024))
        before = psutil.Process(host.process.pid).num_fds()
        with open_files_limit(hard):
            # 100 from the player's own address (127.0.0.1): the host keeps 8 of them, and the player,
            # behind the same address, still gets in. Half say the SSH version line and stop; half never
            # say a word.
            for index in range(100):
                sockets.append(idle_connection("127.0.0.1", host.port, speak=index % 2 == 0))
            assert len(kept_open(sockets, 8)) == 8
            assert_logs_in(host, keys, "with 100 idle connections from the same address")

            # 1,000 more from 100 other addresses: the host keeps 64 in all.
            for index in range(1000):
                sockets.append(idle_connection(f"127.0.0.{2 + index % 100}", host.port, speak=index % 2 == 0))
            assert len(kept_open(sockets, 64)) == 64
            assert psutil.Process(host.process.pid).num_fds() <= before + 64 + 4

            # A player logs in while more connections keep coming, a quarter of them from their address.
            flood = Flood(host.port, sockets)
            try:
                assert_logs_in(host, keys, "with 1,100 idle connections open, and more coming")
            finally:
                flood.stop()
            assert flood.opened > 0
            assert "Too many connections waiting to log in" in host.log_text()
            assert host.process.poll() is None
        assert re.search(r"open files: at most \d+ \(raised from 1024", host.log_text())
    finally:
        for sock in sockets:
            sock.close()
        host.stop()


def assert_logs_in(host: Host, keys: Keys, while_: str) -> None:
    """alice logs in with the real `ssh` client and her key, from 127.0.0.1, within 5 s."""
    started = time.monotonic()
    login = batch_ssh(host, keys, "alice", "alice", "-T", "-o", "ConnectTimeout=10")
    took = time.monotonic() - started
    print(f"real login {while_}: {took:.2f} s")
    # "needs a terminal" comes after the login: the key was accepted.
    assert login.returncode == 1 and "needs a terminal" in login.stdout + login.stderr, login.stderr
    assert took < 5.0


def kept_open(sockets: list[socket.socket], most: int) -> list[socket.socket]:
    """Once the host has sorted them out (at most `most` left), the connections it keeps open."""
    deadline = time.monotonic() + 10
    while len(still_open := [sock for sock in sockets if not closed_by_host(sock)]) > most:
        assert time.monotonic() < deadline, f"{len(still_open)} connections that never logged in are still open"
        time.sleep(0.1)
    return still_open


def idle_connection(source: str, port: int, *, speak: bool) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if speak:
        sock.sendall(b"SSH-2.0-idle\r\n")
    sock.setblocking(False)
    return sock


def closed_by_host(sock: socket.socket) -> bool:
    """Whether the host has closed this connection (what it sent before is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return True


class Flood:
    """Idle connections from 127.0.0.1-101, 100 a second until stopped: kept up for the 20 s login
    timeout, 2,000 of them, twice what a host under the usual limit of 1024 files could hold."""

    def __init__(self, port: int, sockets: list[socket.socket]) -> None:
        self.port = port
        self.sockets = sockets
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flood, daemon=True)
        self._thread.start()

    def _flood(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError):
                source = "127.0.0.1" if self.opened % 4 == 0 else f"127.0.0.{2 + self.opened % 100}"
                self.sockets.append(idle_connection(source, self.port, speak=False))
                self.opened += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_the_hosts_gpu_layers_and_chat_template_reach_every_game(tmp_path: Path, keys: Keys) -> None:
    from simularity_tui import cli
    from simularity_tui.host import server
    from simularity_tui.host.config import HostConfig, LoadedHostConfig
    from simularity_tui.host.player_process import game_command

    model = tmp_path / "shared.gguf"
    model.write_bytes(b"GGUF")
    config = HostConfig.model_validate(host_config(keys, model=str(model), gpu_layers="auto", template="chatml"))
    argv = game_command(server.model_arguments(LoadedHostConfig(tmp_path / "host.toml", config)))
    settings = cli.settings_with_overrides(cli.build_parser().parse_args(argv[3:]))
    assert (settings.model.gpu_layers, settings.model.template, settings.model.n_ctx) == ("auto", "chatml", 1024)
    with pytest.raises(ValueError, match="template"):
        HostConfig.model_validate(host_config(keys, template="vicuna"))
