"""`simularity host`: players log in with the real OpenSSH client, each into their own game.

One host (alice, bob, carol; two sessions at most) serves the play tests; tests that shut an
address out or need other limits start their own. The ssh client runs inside tmux, so the tests
read the screen a player sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import asyncssh
import psutil  # type: ignore[import-untyped]
import pytest
import tomli_w

from simularity_tui.engine.remote.llama_server import LlamaServer, LlamaServerSpec, free_port, llama_server_binary
from simularity_tui.errors import UserFacingError
from simularity_tui.host import server
from simularity_tui.host.auth import Throttle
from simularity_tui.host.config import HostConfig, LoadedHostConfig, load_host_config
from simularity_tui.host.host_key import KEY_FILE_NAME, load_or_create_host_key
from simularity_tui.host.passwords import hash_password, verify_password
from simularity_tui.host.player_process import PlayerDirs, PlayerProcess, TermSize, game_command, game_environment
from simularity_tui.host.shared_server import ServerSlots

from .tmux_pane import TmuxPane

needs_ssh = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("tmux") is None,
    reason="needs the OpenSSH client and tmux (.ci/run installs them)",
)

PASSWORD = "correct horse battery"


# -- helpers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    directory: Path

    def private(self, name: str) -> Path:
        return self.directory / name

    def public(self, name: str) -> str:
        return (self.directory / f"{name}.pub").read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob", "carol", "stranger"):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
        key.write_private_key(directory / name)  # OpenSSH's format, as ssh-keygen writes it
        (directory / name).chmod(0o600)  # ssh refuses a key others may read
        key.write_public_key(directory / f"{name}.pub")
    return Keys(directory)


class Host:
    """`simularity host` as a subprocess, on a free loopback port."""

    def __init__(self, root: Path, config: dict[str, object], player_settings: dict[str, object]) -> None:
        self.root = root
        self.port = free_port()
        self.data_dir = root / "host-data"
        self.config_path = root / "host.toml"
        config = {"listen": "127.0.0.1", "port": self.port, "data_dir": str(self.data_dir), **config}
        self.config_path.write_text(tomli_w.dumps(config))
        for name in config["players"]:  # type: ignore[attr-defined]
            settings = self.data_dir / "players" / name / "config" / "settings.toml"
            settings.parent.mkdir(parents=True)
            settings.write_text(tomli_w.dumps(player_settings))
        self.log = (root / "host.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simularity_tui", "host", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        assert "listening on" in first, first + (root / "host.log").read_text()

    def log_text(self) -> str:
        return (self.root / "host.log").read_text()

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """The host logs what it saw a moment after it happened (a game's exit is reaped, then logged)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert time.monotonic() < deadline, f"{text!r} not in the host's log:\n{self.log_text()}"
            time.sleep(0.05)

    def games(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def player_dir(self, name: str) -> Path:
        return self.data_dir / "players" / name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def host_config(keys: Keys, **extra: object) -> dict[str, object]:
    return {
        "n_ctx": 1024,
        "threads": 1,  # two games at once on two cores
        "max_sessions": 2,
        "max_auth_failures": 1000,  # the refusal tests must not shut the other tests out
        "hangup_grace_seconds": 10.0,
        "players": {
            "alice": {"keys": [keys.public("alice")]},
            "bob": {"keys": [keys.public("bob")]},
            "carol": {"keys": [keys.public("carol")], "password_hash": hash_password(PASSWORD)},
        },
        **extra,
    }


SHORT_REPLIES = {"game": {"max_reply_tokens": 32}, "ui": {"graphics": "halfcell"}}


@pytest.fixture(scope="module")
def host(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    started = Host(tmp_path_factory.mktemp("host"), host_config(keys), SHORT_REPLIES)
    yield started
    started.stop()


def ssh_argv(host: Host, keys: Keys, key: str, user: str, *options: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-i", str(keys.private(key)), "-p", str(host.port),
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", *options, f"{user}@127.0.0.1",
    ]  # fmt: skip


def batch_ssh(
    host: Host, keys: Keys, key: str, user: str, *options: str, command: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """One non-interactive ssh run (no terminal on this side), as a script would make it."""
    argv = [*ssh_argv(host, keys, key, user, "-o", "BatchMode=yes", *options), *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


class Pane(TmuxPane):
    """A player's terminal: `ssh -tt` inside tmux (100x30 unless told)."""

    def __init__(self, tmp_path: Path, name: str, size: tuple[int, int] = (100, 30)) -> None:
        super().__init__(tmp_path / f"{name}-ssh.status", exit_timeout=20.0, size=size)
        self.pid_file = tmp_path / f"{name}-ssh.pid"

    def start(self, argv: list[str]) -> None:
        # The shell writes its pid, then runs ssh in a subshell: the test can find and kill the client.
        self.run(f"({shlex.join(argv)})", before=f"echo $$ > {shlex.quote(str(self.pid_file))}; ")

    def ssh_pid(self) -> int:
        shell = psutil.Process(int(self.pid_file.read_text()))
        return next(child.pid for child in shell.children(recursive=True) if child.name() == "ssh")


@pytest.fixture
def panes(tmp_path: Path) -> Iterator[Callable[[str], Pane]]:
    opened: list[Pane] = []

    def open_pane(name: str) -> Pane:
        opened.append(Pane(tmp_path, name))
        return opened[-1]

    yield open_pane
    for pane in opened:
        pane.close()


def log_in(host: Host, keys: Keys, pane: Pane, name: str) -> None:
    pane.start(ssh_argv(host, keys, name, name, "-tt"))
    pane.wait_for("The Lighthouse at Gull Point")  # the library, listed while the model loads
    pane.send("Enter")  # the first pack: The Lighthouse at Gull Point
    pane.wait_for(lambda screen: "Say something as Ash" in screen and "saved: autosave" in screen)


def play_turn(pane: Pane, line: str) -> str:
    pane.send(line, "Enter")
    pane.wait_for(f"Ash: {line}")
    return pane.wait_for(lambda screen: "tok/s" in screen and "saved: autosave" in screen and "Ash: " in screen)


def save_of(host: Host, name: str) -> Path:
    return host.player_dir(name) / "data" / "saves" / "lighthouse" / "autosave.toml"


def saved_texts(path: Path) -> list[str]:
    return [node["text"] for node in tomllib.loads(path.read_text(encoding="utf-8"))["nodes"]]


def terminal_size(game: psutil.Process) -> tuple[int, int]:
    terminal = game.terminal()
    assert terminal is not None, "the game has no controlling terminal"
    descriptor = os.open(terminal, os.O_RDONLY | os.O_NOCTTY)
    try:
        rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(descriptor, termios.TIOCGWINSZ, bytes(8)))
    finally:
        os.close(descriptor)
    return columns, rows


# -- without a game -------------------------------------------------------------------------------


def test_a_bad_config_is_explained_with_file_and_line(tmp_path: Path, keys: Keys) -> None:
    config = tmp_path / "host.toml"
    config.write_text(
        "port = 2222\n"
        "max_session = 4\n"  # line 2: a typo
        "\n"
        "[players.alice]\n"
        'keys = ["ssh-ed25519 AAAAnot-a-key alice@laptop"]\n'  # line 5
        "\n"
        "[players.Bob]\n"  # line 7: not a user name
        f'keys = ["{keys.public("bob")}"]\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "host", "--config", str(config)], capture_output=True, text=True
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{config}:2:1: unknown key 'max_session'; did you mean 'max_sessions'?" in run.stderr
    assert f"{config}:5:1: players.alice.keys: key 1 is not an OpenSSH public key" in run.stderr
    assert f"{config}:7:" in run.stderr and "players.Bob" in run.stderr
    assert "docs/hosting.md" in run.stderr

    missing = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "host", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "nope.toml: file not found" in missing.stderr


def test_hash_password_prints_a_salted_hash_for_the_config() -> None:
    def hash_of(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simularity_tui", "host", "--hash-password"],
            input=password + "\n",
            capture_output=True,
            text=True,
        )

    first, second = hash_of(PASSWORD), hash_of(PASSWORD)
    assert first.returncode == 0, first.stderr
    stored = tomllib.loads(first.stdout)["password_hash"]
    assert verify_password(PASSWORD, stored) and not verify_password("wrong horse battery", stored)
    assert stored != tomllib.loads(second.stdout)["password_hash"]  # salted
    short = hash_of("abc")
    assert short.returncode == 2 and "too short" in short.stderr


def test_the_host_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_or_create_host_key(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_host_key(tmp_path / "data").public_data == first.public_data
    path.chmod(0o644)
    with pytest.raises(UserFacingError, match="may be read by other users"):
        load_or_create_host_key(tmp_path / "data")


def test_the_throttle_shuts_out_an_address_after_repeated_failures() -> None:
    now = [0.0]
    throttle = Throttle(max_failures=3, window_s=60, block_s=300, clock=lambda: now[0])
    assert not throttle.failed("10.0.0.1", "alice") and not throttle.failed("10.0.0.1", "alice")
    now[0] = 61.0  # the first two are out of the window
    assert not throttle.failed("10.0.0.1", "alice") and not throttle.failed("10.0.0.1", "bob")
    assert throttle.failed("10.0.0.1", "mallory")
    assert throttle.blocked_for("10.0.0.1") == 300 and throttle.blocked_for("10.0.0.2") == 0
    now[0] = 361.0
    assert throttle.blocked_for("10.0.0.1") == 0
    throttle.failed("10.0.0.2", "carol")
    throttle.succeeded("10.0.0.2", "carol")  # carol mistyped her password, then got in: forgiven
    assert not throttle.failed("10.0.0.2", "carol") and not throttle.failed("10.0.0.2", "carol")


def test_logging_in_as_oneself_does_not_forgive_guesses_at_another_players_password() -> None:
    throttle = Throttle(max_failures=5, window_s=60, block_s=300, clock=lambda: 0.0)
    for _ in range(4):
        assert not throttle.failed("10.0.0.3", "alice")  # bob guesses at alice's password…
    throttle.succeeded("10.0.0.3", "bob")  # …logs in as himself…
    assert throttle.failed("10.0.0.3", "alice")  # …and his fifth guess shuts him out all the same


# -- authentication, one connection at a time (no sockets) ---------------------------------------


class FakeConnection:
    """What a `_Gate` needs of asyncssh's connection: the peer's address, and a way to disconnect."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.disconnected: list[str] = []

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.address, 50000) if name == "peername" else default

    def disconnect(self, code: int, reason: str) -> None:
        self.disconnected.append(reason)


def host_object(tmp_path: Path, keys: Keys, **extra: object) -> server.Host:
    """The host's state without a listening socket; call it inside the event loop."""
    config = HostConfig.model_validate(host_config(keys, data_dir=str(tmp_path / "host-data"), **extra))
    return server.Host(LoadedHostConfig(tmp_path / "host.toml", config), [])


def connected_gate(host: server.Host, address: str) -> server._Gate:
    gate = server._Gate(host)
    gate.connection_made(cast(asyncssh.SSHServerConnection, FakeConnection(address)))
    return gate


def disconnects(gate: server._Gate) -> list[str]:
    return cast(FakeConnection, gate.conn).disconnected if gate.conn is not None else []


def test_offered_keys_do_not_count_but_a_connection_that_never_gets_in_does(tmp_path: Path, keys: Keys) -> None:
    async def scenario() -> None:
        host = host_object(tmp_path, keys, max_auth_failures=3)
        bob = asyncssh.import_public_key(keys.public("bob"))
        others = [asyncssh.import_public_key(keys.public(name)) for name in ("alice", "carol", "stranger")]
        others += [asyncssh.generate_private_key("ssh-ed25519").convert_to_public() for _ in range(2)]

        # Bob's agent offers five other keys before his own: he gets in, and nothing is counted.
        gate = connected_gate(host, "10.0.0.5")
        gate.begin_auth("bob")
        assert not any(gate.validate_public_key("bob", key) for key in others)
        assert gate.validate_public_key("bob", bob)
        gate.auth_completed()
        gate.connection_lost(None)
        assert host.throttle.blocked_for("10.0.0.5") == 0 and not disconnects(gate)

        # A connection that offers only wrong keys and gives up counts once, however many it offered.
        for attempt in range(3):
            stranger = connected_gate(host, "10.0.0.5")
            stranger.begin_auth("mallory")
            assert not any(stranger.validate_public_key("mallory", key) for key in others)
            stranger.connection_lost(None)
            assert (host.throttle.blocked_for("10.0.0.5") > 0) == (attempt == 2)
        late = connected_gate(host, "10.0.0.5")
        late.begin_auth("bob")  # shut out, even with the right key
        assert not late.validate_public_key("bob", bob)
        assert "Too many failed logins from 10.0.0.5" in disconnects(late)[0]

    asyncio.run(scenario())


def test_password_checks_cut_short_by_the_client_still_count_and_scrypt_runs_two_at_a_time(
    tmp_path: Path, keys: Keys
) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def slow_wrong_check(username: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)  # scrypt
        with lock:
            running -= 1
        return False

    async def scenario() -> None:
        host = host_object(tmp_path, keys, max_auth_failures=5)
        host.credentials.password_allowed = slow_wrong_check  # type: ignore[method-assign]
        gate = connected_gate(host, "10.0.0.7")
        for attempt in range(5):
            check = asyncio.create_task(gate.validate_password("alice", f"guess {attempt}"))
            await asyncio.sleep(0.02)
            check.cancel()  # as asyncssh does when the client sends its next request before the answer
            with contextlib.suppress(asyncio.CancelledError):
                await check
        assert host.throttle.blocked_for("10.0.0.7") > 0
        assert "Too many failed logins" in disconnects(gate)[0]
        deadline = time.monotonic() + 5
        while running or host.password_checks.locked():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    asyncio.run(scenario())
    assert most <= 2  # the cancelled checks' threads kept their slots until they ended


def test_a_right_password_does_not_get_in_once_parallel_guesses_shut_the_address_out(
    tmp_path: Path, keys: Keys
) -> None:
    def check(username: str, password: str) -> bool:
        time.sleep(0.4 if password == PASSWORD else 0.05)
        return password == PASSWORD

    async def scenario() -> None:
        host = host_object(tmp_path, keys, max_auth_failures=3)
        host.credentials.password_allowed = check  # type: ignore[method-assign]
        gates = [connected_gate(host, "10.0.0.8") for _ in range(4)]
        results = await asyncio.gather(
            *(gate.validate_password("carol", password) for gate, password in zip(gates, ["a", "b", "c", PASSWORD]))
        )
        assert results == [False, False, False, False]
        assert host.throttle.blocked_for("10.0.0.8") > 0
        assert "Too many failed logins" in disconnects(gates[3])[0]

    asyncio.run(scenario())


def test_sizes_and_term_from_the_client_are_made_safe(tmp_path: Path) -> None:
    rows, columns, pixel_width, pixel_height = struct.unpack("HHHH", TermSize(70000, 1 << 31, 1 << 20, 5).packed())
    assert (columns, rows, pixel_width, pixel_height) == (1000, 500, 14979, 0)  # test_host_hardening.py: why
    assert struct.unpack("HHHH", TermSize(0, 0).packed()) == (24, 80, 0, 0)
    dirs = PlayerDirs(tmp_path)
    for term in ("xterm-kitty", "tmux-256color", "screen.xterm-256color", "rxvt-unicode-256color"):
        assert game_environment(dirs, term)["TERM"] == term
    for term in ("xterm\0evil", "xterm\n", "xterm 256", "../../x", "", "x" * 65, None):
        assert game_environment(dirs, term)["TERM"] == "xterm-256color"


def stand_in(source: str) -> list[str]:
    """A stand-in game: one Python process, as the real game is, that runs no shell commands.

    Each stand-in sets its signal handlers before it prints the line its test waits for, so a signal
    sent after that line always meets them. `sh -c 'while :; do sleep 0.05; done'` did not do: dash
    starts each `sleep` with vfork, and a SIGSTOP landing between the vfork and the exec stops the child
    before it is `sleep` while the shell waits for it in the kernel (state D, never T). The test then
    waited for a stop that never came, and both processes stayed stuck until killed."""
    return [sys.executable, "-c", textwrap.dedent(source)]


@pytest.mark.terminal  # a stand-in game on a pseudo-terminal
def test_hanging_up_a_stopped_game_wakes_it_so_it_exits_cleanly(tmp_path: Path) -> None:
    argv = stand_in(
        """
        import signal, sys, time
        signal.signal(signal.SIGHUP, lambda *_: sys.exit(7))  # its own clean exit
        print("ready", flush=True)
        while True:
            time.sleep(1)
        """
    )

    async def scenario() -> None:
        env = {**os.environ, "TERM": "xterm"}
        game = await PlayerProcess.start(argv, env, TermSize(80, 24), cwd=tmp_path)
        try:
            screen = b""
            while b"ready" not in screen:
                screen += await asyncio.wait_for(game.read(), timeout=10)
            game.signal_group(signal.SIGSTOP)  # as Ctrl+Z (SIGTSTP) does
            deadline = time.monotonic() + 5
            while psutil.Process(game.pid).status() != psutil.STATUS_STOPPED:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            started = time.monotonic()
            assert await game.hang_up(grace_s=3) == 7  # its own clean exit, not SIGKILL
            assert time.monotonic() - started < 3
        finally:
            if game.process.returncode is None:  # failed: no stopped stand-in is left behind for ever
                game.signal_group(signal.SIGKILL)
                await game.process.wait()
            game.close()

    asyncio.run(scenario())


def test_a_backend_url_the_game_would_refuse_is_reported_with_its_line(tmp_path: Path, keys: Keys) -> None:
    config = tmp_path / "host.toml"
    for backend, why in (("http://", "is not an http:// or https:// URL"), ("http://127.0.0.1:99999", "bad port")):
        config.write_text(f'port = 2222\nbackend = "{backend}"\n\n[players.alice]\nkeys = ["{keys.public("alice")}"]\n')
        with pytest.raises(UserFacingError) as raised:
            load_host_config(config)
        assert f"{config}:2:1: backend: " in raised.value.message and why in raised.value.message
    config.write_text(f'backend = "http://127.0.0.1:8080"\n\n[players.alice]\nkeys = ["{keys.public("alice")}"]\n')
    assert load_host_config(config).config.backend == "http://127.0.0.1:8080"


def test_every_game_is_told_its_model_or_server(tmp_path: Path, keys: Keys) -> None:
    model = tmp_path / "shared.gguf"
    model.write_bytes(b"GGUF")
    for extra, expected in (
        ({"model": str(model)}, ["--model", str(model)]),
        ({"backend": "http://127.0.0.1:8080"}, ["--backend", "http://127.0.0.1:8080"]),
    ):
        config = HostConfig.model_validate(host_config(keys, **extra))
        argv = game_command(server.model_arguments(LoadedHostConfig(tmp_path / "host.toml", config)))
        assert argv[3:5] == expected and "--n-ctx" in argv


def test_a_shared_server_is_configured_alone_and_its_binary_must_exist(tmp_path: Path, keys: Keys) -> None:
    config = tmp_path / "host.toml"
    player = f'\n[players.alice]\nkeys = ["{keys.public("alice")}"]\n'
    for lines, why in (
        ('shared_server = true\nbackend = "http://127.0.0.1:8080"\n', "set `shared_server`"),
        ('llama_server = "/usr/bin/llama-server"\n', "`llama_server` is used with `shared_server = true` only"),
    ):
        config.write_text(lines + player)
        with pytest.raises(UserFacingError) as raised:
            load_host_config(config)
        assert str(config) in raised.value.message and why in raised.value.message
    config.write_text('shared_server = true\nllama_server = "bin/llama-server"\n' + player)
    loaded = load_host_config(config)
    assert loaded.llama_server == str(tmp_path / "bin" / "llama-server")  # beside the config, as `model`
    with pytest.raises(UserFacingError) as raised:
        llama_server_binary(loaded.llama_server)
    assert "is not an executable file" in raised.value.message and "[server]" in (raised.value.hint or "")


def test_a_llama_server_that_never_answers_is_stopped_and_its_files_are_private(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\numask\nexec sleep 60\n")  # says its umask, then hangs as a stuck load would
    binary.chmod(0o755)
    spec = LlamaServerSpec(tmp_path / "model.gguf", n_ctx_per_slot=256, slot_save_path=tmp_path / "data" / "slots")
    server = LlamaServer(binary, spec, tmp_path / "data" / "llama-server.log")
    with pytest.raises(UserFacingError, match=r"did not answer within 1 s"):
        server.start(timeout_s=1.0)
    assert server.process is not None and server.process.poll() is not None  # stopped, not left behind
    # The players' stories end up in its slot files and its log: for the host's user alone.
    assert (tmp_path / "data" / "slots").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data" / "llama-server.log").read_text().strip() == "0077"


def test_server_slots_give_a_player_back_their_last_slot_when_it_is_free() -> None:
    slots = ServerSlots(3)
    alice, bob = slots.take("alice"), slots.take("bob")
    assert (alice, bob) == (0, 1)
    slots.give_back(alice)
    assert slots.take("carol") == 2  # a newcomer gets a slot nobody had last: alice's story stays in 0
    assert slots.take("alice") == 0
    with pytest.raises(RuntimeError):  # all three taken: never a slot shared (the host lets no more games in)
        slots.take("dave")
    slots.give_back(1)
    assert slots.take("dave") == 1  # every free slot was someone's: the lowest


@needs_ssh
def test_wrong_keys_unknown_users_commands_and_no_terminal_are_refused(host: Host, keys: Keys) -> None:
    wrong_key = batch_ssh(host, keys, "stranger", "alice")
    assert wrong_key.returncode == 255 and "Permission denied" in wrong_key.stderr
    other_players_key = batch_ssh(host, keys, "bob", "alice")
    assert other_players_key.returncode == 255 and "Permission denied" in other_players_key.stderr
    unknown = batch_ssh(host, keys, "alice", "mallory")
    assert unknown.returncode == 255 and "Permission denied" in unknown.stderr
    command = batch_ssh(host, keys, "alice", "alice", command=("cat", "/etc/passwd"))
    assert command.returncode == 1 and "This host runs the game only" in command.stdout + command.stderr
    assert "root:" not in command.stdout
    no_terminal = batch_ssh(host, keys, "alice", "alice", "-T")
    assert no_terminal.returncode == 1 and "needs a terminal" in no_terminal.stdout + no_terminal.stderr
    assert host.process.poll() is None and not host.games()
    assert "refused: key for user 'mallory'" in host.log_text()


def test_a_password_logs_in_and_a_wrong_one_does_not(host: Host) -> None:
    async def log_in(password: str) -> None:
        async with asyncssh.connect(
            "127.0.0.1", host.port, username="carol", password=password,
            client_keys=None, known_hosts=None, agent_path=None, preferred_auth="password",
        ):  # fmt: skip
            pass

    asyncio.run(log_in(PASSWORD))
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(log_in("wrong horse battery"))


@needs_ssh
@pytest.mark.ssh  # `simularity host` and the ssh client, on loopback
def test_repeated_failures_shut_the_address_out_even_with_the_right_key(tmp_path: Path, keys: Keys) -> None:
    strict = Host(tmp_path, host_config(keys, max_auth_failures=3, auth_block_seconds=120), SHORT_REPLIES)
    try:
        for _ in range(3):
            assert batch_ssh(strict, keys, "stranger", "alice").returncode == 255
        shut_out = batch_ssh(strict, keys, "alice", "alice", "-T")
        assert shut_out.returncode == 255
        assert "Too many failed logins from 127.0.0.1; try again in 2 min" in shut_out.stderr
        assert "127.0.0.1 shut out for 120 s" in strict.log_text()
    finally:
        strict.stop()


# -- the host in this process, with a stand-in game (Python) -----------------------------------------


@contextlib.asynccontextmanager
async def host_in_process(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, game_script: str, **extra: object
) -> AsyncIterator[server.Host]:
    """A listening host whose games are `python -c game_script` (`stand_in`), run in the player's directory."""
    monkeypatch.setattr(server, "game_command", lambda _arguments: stand_in(game_script))
    host = host_object(tmp_path, keys, listen="127.0.0.1", port=free_port(), **extra)
    acceptor = await host.listen()
    try:
        yield host
    finally:
        acceptor.close()
        await asyncio.gather(*(game.hang_up(1.0) for game in list(host.games)))


async def connect(host: server.Host, keys: Keys, name: str) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1", host.config.port, username=name, client_keys=[str(keys.private(name))],
        known_hosts=None, agent_path=None,
    )  # fmt: skip


async def play(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHClientProcess[bytes]:
    return await conn.create_process(term_type="xterm", term_size=(80, 24), encoding=None)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.ssh  # asyncssh logs in to the host (its games are stand-ins: `stand_in`)
def test_a_player_who_drops_is_hung_up_even_when_the_game_stopped_reading(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No handler: SIGHUP's default action ends it, and the status says which signal did.
    script = """
        import time
        print("ready", flush=True)
        time.sleep(60)  # never reads its terminal
        """

    async def scenario() -> None:
        async with host_in_process(tmp_path, keys, monkeypatch, script) as host:
            conn = await connect(host, keys, "alice")
            process = await play(conn)
            await asyncio.wait_for(process.stdout.readuntil(b"ready"), timeout=10)
            [game] = host.games
            process.stdin.write(b"typed into a game that never reads\n" * 8000)  # fills its terminal
            await asyncio.sleep(0.5)
            conn.abort()  # the connection drops
            await eventually(lambda: not host.games and host.playing == 0)
            assert game.process.returncode == -signal.SIGHUP

    asyncio.run(scenario())


@pytest.mark.ssh
def test_a_game_whose_terminal_stays_open_still_ends_its_session(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process outside the game's group keeps the pty open after the game has exited. Its pid is written
    # before "ready": every orphan the test has seen ready is killed at the end, the last game's too.
    script = """
        import subprocess, sys, time
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
        with open("orphan.pid", "a") as pids:
            print(orphan.pid, file=pids)
        print("ready", flush=True)
        time.sleep(60)
        """
    monkeypatch.setattr(server, "_DRAIN_AFTER_EXIT_S", 0.3)

    async def scenario() -> None:
        async with host_in_process(tmp_path, keys, monkeypatch, script) as host:
            orphan = host.loaded.player_dir("alice") / "orphan.pid"
            try:
                conn = await connect(host, keys, "alice")
                process = await play(conn)
                await asyncio.wait_for(process.stdout.readuntil(b"ready"), timeout=10)
                assert len(orphan.read_text().split()) == 1
                conn.close()
                await eventually(lambda: not host.games and host.playing == 0)
                again = await connect(host, keys, "alice")  # the slot is free
                await asyncio.wait_for((await play(again)).stdout.readuntil(b"ready"), timeout=10)
                again.close()
                await eventually(lambda: not host.games)
            finally:
                for line in orphan.read_text().split() if orphan.exists() else []:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)

    asyncio.run(scenario())


@pytest.mark.ssh
def test_logging_in_again_takes_over_the_earlier_session_after_it_saved(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = """
        import os, signal, sys, time

        def save(*_):
            with open("events", "a") as events:
                print("saved", file=events)
            sys.exit(0)

        signal.signal(signal.SIGHUP, save)
        with open("events", "a") as events:
            print("started", file=events)
        print(f"game {os.getpid()} is on", flush=True)
        while True:
            time.sleep(1)
        """

    async def scenario() -> None:
        async with host_in_process(tmp_path, keys, monkeypatch, script) as host:
            events = host.loaded.player_dir("alice") / "events"
            first = await connect(host, keys, "alice")  # its network goes quiet: the host cannot tell yet
            earlier = await play(first)
            await asyncio.wait_for(earlier.stdout.readuntil(b"is on"), timeout=10)

            second = await connect(host, keys, "alice")
            later = await play(second)
            shown = await asyncio.wait_for(later.stdout.readuntil(b"is on"), timeout=15)
            assert b"ending your other session" in shown
            assert events.read_text().split() == ["started", "saved", "started"]  # saved before the new one began
            assert host.playing == 1 and len(host.games) == 1

            ended = await earlier.wait(timeout=10)
            assert ended.exit_status == 0  # the earlier game's own clean exit
            assert isinstance(ended.stdout, bytes) and b"alice logged in again elsewhere" in ended.stdout
            first.close()
            second.close()
            await eventually(lambda: not host.games)

    asyncio.run(scenario())


# -- playing --------------------------------------------------------------------------------------


@needs_ssh
@pytest.mark.model  # the players' games play on the embedded model
def test_a_player_logs_in_sees_the_library_and_plays_a_turn(
    host: Host, keys: Keys, panes: Callable[[str], Pane]
) -> None:
    pane = panes("alice")
    log_in(host, keys, pane, "alice")
    [game] = host.games()
    environment = game.environ()
    assert environment["TERM"] in ("screen", "screen-256color", "tmux", "tmux-256color")  # from the client
    assert environment["COLORTERM"] == "truecolor"
    assert "COLUMNS" not in environment  # the host's own terminal (pytest sets 80) is not the player's
    assert environment["SIMULARITY_DATA_DIR"] == str(host.player_dir("alice") / "data")
    assert environment["SIMULARITY_CONFIG_DIR"] == str(host.player_dir("alice") / "config")
    assert "--model" in game.cmdline() and "--n-ctx" in game.cmdline()
    assert terminal_size(game) == (100, 30)

    pane.tmux("resize-window", "-x", "120", "-y", "36")  # the player's window grows: the game follows
    deadline = time.monotonic() + 10
    while terminal_size(game) != (120, 36):
        assert time.monotonic() < deadline, terminal_size(game)
        time.sleep(0.1)
    pane.wait_for(lambda screen: any(len(row) > 100 and "palette" in row for row in screen.splitlines()))

    screen = play_turn(pane, "Who keeps this lighthouse?")
    after = screen.split("Ash: Who keeps this lighthouse?", 1)[1]
    assert after.split("▔", 1)[0].strip(), screen  # the reply is on the screen
    assert "Who keeps this lighthouse?" in saved_texts(save_of(host, "alice"))
    pane.send("C-q")
    assert pane.exit_status() == 0
    deadline = time.monotonic() + 10
    while host.games():
        assert time.monotonic() < deadline
        time.sleep(0.1)


@needs_ssh
@pytest.mark.model
def test_two_players_play_apart_and_one_dropping_mid_reply_harms_no_one(
    host: Host, keys: Keys, panes: Callable[[str], Pane]
) -> None:
    alice, bob = panes("alice"), panes("bob")
    log_in(host, keys, alice, "alice")
    log_in(host, keys, bob, "bob")

    # Both slots are taken: a third player is told why and let go.
    full = subprocess.run(ssh_argv(host, keys, "carol", "carol", "-tt"), capture_output=True, text=True, timeout=30)
    assert full.returncode == 1 and "The host is full: 2 players are playing" in full.stdout

    play_turn(bob, "Bob asks about the storm.")
    play_turn(alice, "Alice asks about the cat.")
    assert "Bob asks about the storm." in saved_texts(save_of(host, "bob"))
    assert "Alice asks about the cat." in saved_texts(save_of(host, "alice"))
    everything = [path.read_text(errors="replace") for path in host.data_dir.rglob("*.toml") if "saves" in path.parts]
    assert sum("Bob asks" in text for text in everything) == 1  # in bob's save only
    bob_before = saved_texts(save_of(host, "bob"))
    bob_game = next(game for game in host.games() if game.environ()["HOME"] == str(host.player_dir("bob")))

    # Bob types a line and his ssh client dies while the reply is being written.
    bob.send("Bob never hears the answer.", "Enter")
    bob.wait_for("Esc stops")
    alice.send("Alice goes on playing.", "Enter")
    os.kill(bob.ssh_pid(), signal.SIGKILL)

    screen = alice.wait_for(
        lambda s: "Ash: Alice goes on playing." in s and "saved: autosave" in s and "tok/s" in s, timeout=90
    )
    assert screen.split("Ash: Alice goes on playing.", 1)[1].split("▔", 1)[0].strip(), screen
    bob_game.wait(timeout=20)  # hung up: it saved and ended
    assert host.process.poll() is None
    assert "bob left: hanging up game" in host.log_text()
    host.wait_for_log(f"game {bob_game.pid} of bob ended with status 0")  # it quit as Ctrl+Q would
    after = saved_texts(save_of(host, "bob"))  # loadable TOML
    assert after[: len(bob_before)] == bob_before  # every line before the drop is kept
    assert len(host.games()) == 1  # alice's game alone

    # Bob's slot is free again, and his game resumes where it was saved.
    bob_again = panes("bob-again")
    bob_again.start(ssh_argv(host, keys, "bob", "bob", "-tt"))
    bob_again.wait_for("The Lighthouse at Gull Point")
    bob_again.send("Enter")
    bob_again.wait_for("Ash: Bob asks about the storm.")
    alice.send("C-q")
    bob_again.send("C-q")
    assert alice.exit_status() == 0 and bob_again.exit_status() == 0


@needs_ssh
@pytest.mark.model
@pytest.mark.server  # the host's own llama-server
def test_a_shared_server_plays_every_game_each_in_a_slot_of_its_own(
    tmp_path: Path, keys: Keys, panes: Callable[[str], Pane]
) -> None:
    shared = Host(tmp_path, host_config(keys, shared_server=True), SHORT_REPLIES)
    try:
        [llama_server] = [child for child in shared.games() if "llama-server" in child.name()]
        alice, bob = panes("alice"), panes("bob")
        log_in(shared, keys, alice, "alice")
        log_in(shared, keys, bob, "bob")
        games = [game for game in shared.games() if game.pid != llama_server.pid]
        assert len(games) == 2
        key = next(iter({game.environ()["SIMULARITY_API_KEY"] for game in games}))
        argv_of = {Path(game.environ()["HOME"]).name: game.cmdline() for game in games}
        slots = set()
        for game in games:
            argv = game.cmdline()
            assert argv[argv.index("--backend") + 1].startswith("http://127.0.0.1:") and "--model" not in argv
            slots.add(argv[argv.index("--server-slot") + 1])
            assert key not in " ".join(argv)  # the server's key is in the games' environment alone
            # The games load no model: llama.cpp is not even in their memory.
            assert "libllama" not in Path(f"/proc/{game.pid}/maps").read_text()
        assert slots == {"0", "1"}
        assert key not in " ".join(llama_server.cmdline()) and "--api-key" not in llama_server.cmdline()

        play_turn(bob, "Bob asks about the storm.")
        play_turn(alice, "Alice asks about the cat.")
        assert "Bob asks about the storm." in saved_texts(save_of(shared, "bob"))
        assert "Alice asks about the cat." in saved_texts(save_of(shared, "alice"))
        server_log = (shared.data_dir / "llama-server.log").read_text()
        # Each game asked for its own slot by number (not the server's pick by prompt).
        assert "selected slot by id (0)" in server_log and "selected slot by id (1)" in server_log
        assert "n_slots = 2, n_ctx_slot = 1024" in server_log
        alice.send("C-q")
        assert alice.exit_status() == 0
        alice_again = panes("alice-again")
        log_in(shared, keys, alice_again, "alice")
        [game] = [game for game in shared.games() if game.pid != llama_server.pid and "alice" in game.environ()["HOME"]]
        assert game.cmdline() == argv_of["alice"]  # her slot again: the server may still hold her story there
        alice_again.send("C-q")
        bob.send("C-q")
        assert alice_again.exit_status() == 0 and bob.exit_status() == 0
    finally:
        shared.stop()
    assert not llama_server.is_running()  # the host stops the server it started


# -- the benchmark --------------------------------------------------------------------------------


@pytest.mark.ssh  # its players log in over ssh (the model mark: `model_path`)
def test_bench_host_measures_time_to_first_token_and_memory(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "host.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "simularity_tui", "bench", "host", "--players", "2", "--turns", "1",
            "--reply-tokens", "12", "--threads", "1", "--shared-server", "1", "--room", "1", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    figures = json.loads(out.read_text())
    assert [player["name"] for player in figures["players"]] == ["player1", "player2"]
    for player in figures["players"]:
        [turn] = player["turns"]
        assert 0 < turn["ttft_s"] <= turn["turn_s"] < 120
    memory = figures["memory"]
    assert memory["games"] == 2
    # The weights are mapped once for both games: PSS counts them once, RSS summed twice.
    assert memory["games_rss_bytes"] - memory["games_pss_bytes"] > 0.5 * figures["settings"]["model_bytes"]
    assert 0 < memory["per_extra_player_bytes"] < memory["games_rss_bytes"] / 2
    assert "each extra player:" in run.stdout and "TTFT median" in run.stdout
    # The same players on one llama-server the host started: the games hold no weights (their RSS
    # together is less than the model file), the server holds them once, and a player costs less.
    shared = figures["shared_server"]
    on_server = shared["memory"]
    assert on_server["games"] == 2 and on_server["games_rss_bytes"] < figures["settings"]["model_bytes"]
    assert on_server["server_pss_bytes"] > 0.5 * figures["settings"]["model_bytes"]
    assert 0 < on_server["server_kv_per_slot_bytes"] < on_server["per_extra_player_bytes"]
    assert on_server["per_extra_player_bytes"] < memory["per_extra_player_bytes"]
    assert all(0 < turn["ttft_s"] < 120 for player in shared["players"] for turn in player["turns"])
    assert "each extra player on the shared server:" in run.stdout
    # The two in one room: the reply seen on the other's screen; a player there is a screen, no model.
    room = figures["room"]
    assert room["players"] == room["seated"] == 2 and 0 < room["reply_seen_median_s"] <= room["reply_seen_max_s"] < 120
    in_room = room["memory"]
    assert len(in_room["clients_anonymous"]) == 2 and in_room["room_pss_bytes"] > 0
    assert 0 < in_room["per_extra_player_bytes"] < memory["per_extra_player_bytes"] / 2
    assert "each extra player in the room:" in run.stdout
