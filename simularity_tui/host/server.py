"""`simularity host`: an SSH server where each player who logs in plays their own game.

asyncssh does the protocol; this module decides who gets in (auth.py), how many play at once, and
joins each SSH session to a game process on a pty (player_process.py). Nothing but the game runs:
no shell, no commands, no forwarding, no file transfer. One player's game dropping, hanging or
crashing ends that process group alone; the host and the other players go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from ..engine.remote.llama_server import LlamaServer
from ..errors import UserFacingError
from ..room.rules import ROOM_NAME
from .auth import Credentials, Throttle
from .config import LoadedHostConfig
from .host_key import fingerprint, load_or_create_host_key
from .player_process import PlayerDirs, PlayerProcess, TermSize, game_command, game_environment
from .rooms import RoomProcesses, RoomUnavailable, check_rooms
from .shared_server import ServerSlots, start_shared_server
from .waiting_room import WaitingRoom

log = logging.getLogger("simularity.host")

_KEEPALIVE_S = 30  # a client gone silent (a laptop closed) is found within about 90 s and hung up
# scrypt checks (32 MiB, about 0.1 s of CPU each) running at once, host-wide: guessers on many
# connections queue here instead of taking every core from the players' games.
_PASSWORD_CHECKS = 2
# After a game has exited, how long its screen may take to finish: a process that escaped its group
# can keep the pty open for ever, and the session must still end (and free its slot).
_DRAIN_AFTER_EXIT_S = 5.0
# Connections closed because the waiting room was full are logged once, then summed up this often:
# a flood must not fill the journal with one line per connection.
_DROPS_LOGGED_EVERY_S = 10.0
# Connections the kernel queues until the host accepts them (asyncio's default: 100). A burst larger
# than the queue has its SYNs dropped, and each client dropped so (a real player's too) retries only
# after a second; queued instead, they are accepted at once and the waiting room sorts them out.
_LISTEN_BACKLOG = 1024
# A client sends its SSH version line as soon as it connects (one network trip): a connection still
# silent after this long is idle, and the first a full waiting room closes.
_SILENT_GRACE_S = 3.0


def model_arguments(loaded: LoadedHostConfig, shared: LlamaServer | None = None) -> list[str]:
    """The options every player's game starts with: one shared model (or server), the host's limits
    (which win over the player's own settings.toml).

    The model file is prepared here, once: every game then maps the same file, and the kernel keeps one
    copy of the weights in memory however many players there are. With a server (`shared`, the host's
    own llama-server, or `backend`) the games load no model at all."""
    config = loaded.config
    if shared is not None:
        arguments = ["--backend", shared.url]
    elif config.backend:
        arguments = ["--backend", config.backend]
    else:
        arguments = ["--model", str(loaded.model_file())]
    arguments += ["--n-ctx", str(config.n_ctx), "--threads", str(config.threads), "--template", config.template]
    if shared is None and not config.backend:
        arguments += ["--gpu-layers", str(config.gpu_layers)]
    return arguments


@dataclass(eq=False)
class _Session:
    """One player's session, from its slot to its game's end."""

    name: str
    taken_over: asyncio.Event = field(default_factory=asyncio.Event)  # the player logged in again
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Host:
    def __init__(
        self,
        loaded: LoadedHostConfig,
        model_args: list[str],
        game_env: dict[str, str] | None = None,
        room_titles: dict[str, str] | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.model_args = model_args
        self.game_env = game_env or {}  # what every game gets besides its player's terminal and files
        # On a server, each game keeps a slot of its own (its prompt cache): as many as games at once.
        on_server = self.config.shared_server or bool(self.config.backend)
        self.server_slots = ServerSlots(loaded.server_slots) if on_server else None
        self.credentials = Credentials(self.config)
        self.throttle = Throttle(
            self.config.max_auth_failures, self.config.auth_window_seconds, self.config.auth_block_seconds
        )
        self.password_checks = asyncio.Semaphore(_PASSWORD_CHECKS)
        self.sessions: dict[str, list[_Session]] = {}  # per player, oldest first
        self._logins: dict[str, asyncio.Lock] = {}  # per player: one login at a time takes a slot
        self.games: set[PlayerProcess] = set()
        # Connections that have not logged in yet, capped (waiting_room.py says why and how).
        self.waiting_room: WaitingRoom[_Gate] = WaitingRoom(
            self.config.max_unauthenticated, self.config.max_unauthenticated_per_address, _Gate.progress
        )
        self._drops_unlogged: int | None = None  # None: no drop logged lately, the next is logged at once
        self._stopping = asyncio.Event()
        self.rooms = RoomProcesses(loaded, model_args, self.game_env, room_titles or {})
        self._room_slots: dict[str, int] = {}  # on a server, each room's slot, kept while the host runs
        self._room_openings: set[asyncio.Future[RoomUnavailable | None]] = set()

    async def listen(self) -> asyncssh.SSHAcceptor:
        """Accept players from now on (the host key is made on the first start)."""
        config = self.config
        host_key = load_or_create_host_key(self.loaded.data_dir)
        try:
            server = await asyncssh.create_server(
                lambda: _Gate(self),
                config.listen,
                config.port,
                server_host_keys=[host_key],
                process_factory=self._session,
                encoding=None,  # bytes: the game's screen goes through untouched
                line_editor=False,  # the game reads keys itself
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
                keepalive_interval=_KEEPALIVE_S,
                keepalive_count_max=3,
                backlog=_LISTEN_BACKLOG,
                login_timeout=config.login_timeout_seconds,  # from the accept: idle connections go soon
            )
        except OSError as error:
            raise UserFacingError(
                f"cannot listen on {config.listen}:{config.port} ({error.strerror})",
                hint=f"Another program may use the port: set `port` in {self.loaded.path}.",
                path=self.loaded.path,
            ) from None
        self.host_key_fingerprint = fingerprint(host_key)
        return server

    async def serve(self) -> int:
        config = self.config
        server = await self.listen()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stopping.set)
        names = ", ".join(sorted(config.players))
        print(
            f"simularity host: listening on {config.listen}:{config.port} for {names}\n"
            f"  host key {self.host_key_fingerprint}\n  players' files in {self.loaded.data_dir / 'players'}",
            flush=True,
        )
        await self._stopping.wait()
        log.info("stopping: hanging up %d game(s)", len(self.games))
        server.close()
        await asyncio.gather(*(game.hang_up(config.hangup_grace_seconds) for game in list(self.games)))
        await self.rooms.stop()
        return 0

    # -- connections that have not logged in yet --------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self.waiting_room)

    def arrived(self, gate: _Gate) -> None:
        """A new connection waits to log in; past a cap, the idlest waiting one is closed."""
        for pushed_out in self.waiting_room.enter(gate, gate.address):
            pushed_out.close_waiting()
            self._log_drop(pushed_out.address)

    def _log_drop(self, address: str) -> None:
        if self._drops_unlogged is not None:
            self._drops_unlogged += 1
            return
        config = self.config
        log.warning(
            "Too many connections waiting to log in (at most %d, %d per address): closing the idlest, from %s",
            config.max_unauthenticated,
            config.max_unauthenticated_per_address,
            address,
        )
        self._drops_unlogged = 0
        asyncio.get_running_loop().call_later(_DROPS_LOGGED_EVERY_S, self._log_drops_since)

    def _log_drops_since(self) -> None:
        if not self._drops_unlogged:
            self._drops_unlogged = None  # quiet again: the next drop is logged as it happens
            return
        log.warning(
            "Too many connections waiting to log in: closed %d more in %.0f s",
            self._drops_unlogged,
            _DROPS_LOGGED_EVERY_S,
        )
        self._drops_unlogged = 0
        asyncio.get_running_loop().call_later(_DROPS_LOGGED_EVERY_S, self._log_drops_since)

    # -- one session ------------------------------------------------------------------------------

    @property
    def playing(self) -> int:
        return sum(len(sessions) for sessions in self.sessions.values())

    def _refusal(self, process: asyncssh.SSHServerProcess[bytes], name: str) -> str | None:
        if process.subsystem is not None or (process.command is not None and _room_asked(process) is None):
            return "This host runs the game only: connect without a command (ssh -t HOST), or `room NAME`."
        room = _room_asked(process)
        if room is not None and room not in {door.name for door in self.rooms.doors(name)}:
            listed = ", ".join(door.name for door in self.rooms.doors(name)) or "none"
            return f"No room {room!r} for you here. Rooms you may join: {listed}."
        if process.term_type is None:
            return "The game needs a terminal: connect with ssh -t."
        return None

    async def _take_slot(self, name: str, process: asyncssh.SSHServerProcess[bytes]) -> _Session | None:
        """A place for this session, or None when the host is full.

        A player already at `max_sessions_per_player` takes over their oldest session: its game is
        hung up (it saves, as on a dropped connection) and has ended before the new one starts. A
        player whose connection dropped is back at once, not refused until keep-alives notice."""
        async with self._logins.setdefault(name, asyncio.Lock()):
            mine = self.sessions.setdefault(name, [])
            while len(mine) >= self.config.max_sessions_per_player:
                log.info("%s logged in again: ending their earlier session", name)
                with contextlib.suppress(OSError, asyncssh.Error):
                    process.stdout.write(b"simularity host: ending your other session (it saves)...\r\n")
                mine[0].taken_over.set()
                await mine[0].ended.wait()
            if self.playing >= self.config.max_sessions:
                return None
            session = _Session(name)
            mine.append(session)
            return session

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        name = str(process.get_extra_info("username"))
        refusal = self._refusal(process, name)
        session = None
        if refusal is None:
            session = await self._take_slot(name, process)
            if session is None:
                refusal = f"The host is full: {self.config.max_sessions} players are playing. Try again later."
        if refusal is not None or session is None:
            log.info("session of %s refused: %s", name, refusal)
            with contextlib.suppress(OSError, asyncssh.Error):
                process.stdout.write(f"simularity host: {refusal}\r\n".encode())
                process.exit(1)
            return
        try:
            status = await self._play(process, session)
        finally:
            self.sessions[name].remove(session)
            session.ended.set()
        with contextlib.suppress(OSError, asyncssh.Error):
            if session.taken_over.is_set():
                process.stdout.write(
                    f"\r\nsimularity host: {name} logged in again elsewhere; this session ended.\r\n".encode()
                )
            process.exit(status)

    async def _play(self, process: asyncssh.SSHServerProcess[bytes], session: _Session) -> int:
        name = session.name
        dirs = PlayerDirs(self.loaded.player_dir(name))
        for directory in (dirs.root, dirs.config, dirs.data, dirs.cache):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        room = _room_asked(process)
        if room is not None:
            return await self._join_room(process, session, dirs, room)
        for door in self.rooms.doors(name):  # the library lists them: open, a player's are joined at once
            if door.role == "spectator":
                continue  # a room someone may only watch starts when it is joined: it costs a model context
            opening = asyncio.ensure_future(self._open_room(door.name))
            self._room_openings.add(opening)  # held: the loop keeps tasks only weakly
            opening.add_done_callback(self._room_openings.discard)
        slot = self.server_slots.take(name) if self.server_slots is not None else None  # a free one: sessions <= slots
        try:
            argv = game_command(self._game_arguments(slot))
            return await self._play_game(process, session, dirs, argv, self.game_env)
        finally:
            if self.server_slots is not None and slot is not None:
                self.server_slots.give_back(slot)

    def _game_arguments(self, slot: int | None) -> list[str]:
        return [*self.model_args, *(["--server-slot", str(slot)] if slot is not None else [])]

    async def _join_room(
        self, process: asyncssh.SSHServerProcess[bytes], session: _Session, dirs: PlayerDirs, room: str
    ) -> int:
        """The player's screen on a room (the room's process started first if it is not running)."""
        with contextlib.suppress(OSError, asyncssh.Error):
            process.stdout.write(f"simularity host: joining the room {room}...\r\n".encode())
        reason = await self._open_room(room)
        if reason is not None:
            with contextlib.suppress(OSError, asyncssh.Error):
                process.stdout.write(f"simularity host: the room {room} cannot open: {reason}\r\n".encode())
            return 1
        # The room's screen loads no model: it is given no server key.
        return await self._play_game(process, session, dirs, game_command(["room", "join", room]), {})

    async def _open_room(self, room: str) -> RoomUnavailable | None:
        """Start the room's process if it is not running; why it cannot start, if it cannot."""
        if self.server_slots is not None and room not in self._room_slots:
            self._room_slots[room] = self.server_slots.take(f"room:{room}")
        try:
            await self.rooms.open(room, self._room_slots.get(room))
        except RoomUnavailable as reason:
            log.error("room %s cannot open: %s", room, reason)
            return reason
        return None

    async def _play_game(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        session: _Session,
        dirs: PlayerDirs,
        argv: list[str],
        model_env: dict[str, str],
    ) -> int:
        name = session.name
        columns, rows, pixel_width, pixel_height = process.term_size
        try:
            game = await PlayerProcess.start(
                argv,
                {**game_environment(dirs, process.term_type), **model_env, **self.rooms.environment(name)},
                TermSize(columns, rows, pixel_width, pixel_height),
                cwd=dirs.root,
            )
        except OSError as error:  # out of ptys or processes: this player is told, the host goes on
            log.error("cannot start a game for %s: %s", name, error)
            with contextlib.suppress(OSError, asyncssh.Error):
                process.stdout.write(f"simularity host: the game cannot start ({error.strerror}).\r\n".encode())
            return 1
        self.games.add(game)
        log.info("%s plays: game %d (%s)", name, game.pid, " ".join(argv[3:]))
        to_client = asyncio.create_task(_game_to_client(game, process))
        to_game = asyncio.create_task(_client_to_game(process, game))
        # The channel closing ends the session even while `to_game` is stuck typing into a game that
        # stopped reading its terminal: a dropped player is always hung up.
        closed = asyncio.create_task(process.channel.wait_closed())
        taken_over = asyncio.create_task(session.taken_over.wait())
        try:
            await asyncio.wait({to_client, to_game, closed, taken_over}, return_when=asyncio.FIRST_COMPLETED)
            if not _ended_cleanly(to_client):  # the player left, dropped or logged in again: the game saves and exits
                log.info(
                    "%s %s: hanging up game %d", name, "logged in again" if taken_over.done() else "left", game.pid
                )
                # The screen goes nowhere now; drained, so the game never blocks on its terminal while
                # it saves (a client that stopped reading must not hold the game up).
                to_client.cancel()
                to_client = asyncio.create_task(_discard_screen(game))
                await game.hang_up(self.config.hangup_grace_seconds)
            status = await game.process.wait()
            log.info("game %d of %s ended with status %d", game.pid, name, status)
            return status if status >= 0 else 128 - status  # killed by a signal: as a shell reports it
        finally:
            for task in (to_game, closed, taken_over):
                task.cancel()
            try:
                if game.process.returncode is None:  # this task was cancelled: still end the game, fully
                    to_client.cancel()
                    to_client = asyncio.create_task(_discard_screen(game))
                    await asyncio.shield(game.hang_up(self.config.hangup_grace_seconds))
                done, _ = await asyncio.wait({to_client}, timeout=_DRAIN_AFTER_EXIT_S)
                if not done:
                    log.warning("game %d of %s: its terminal stayed open after it exited", game.pid, name)
                    to_client.cancel()
                elif not to_client.cancelled() and to_client.exception() is not None:
                    log.warning("game %d of %s: reading its screen failed: %s", game.pid, name, to_client.exception())
            finally:
                game.close()
                self.games.discard(game)


_ROOM_COMMAND = re.compile(r"room (" + ROOM_NAME.strip("^$") + ")")


def _room_asked(process: asyncssh.SSHServerProcess[bytes]) -> str | None:
    """The room named by `ssh -t HOST room NAME`, if that is the command."""
    command = process.command
    found = _ROOM_COMMAND.fullmatch(command.strip()) if isinstance(command, str) else None
    return found.group(1) if found else None


def _ended_cleanly(to_client: asyncio.Task[None]) -> bool:
    """Whether the game's screen ended because the game closed its terminal (it exited)."""
    return to_client.done() and not to_client.cancelled() and to_client.exception() is None


async def _game_to_client(game: PlayerProcess, process: asyncssh.SSHServerProcess[bytes]) -> None:
    """The game's screen to the player; once the player is gone, drained so the game never blocks."""
    connected = True
    while data := await game.read():
        if not connected:
            continue
        try:
            process.stdout.write(data)
            await process.stdout.drain()
        except (OSError, asyncssh.Error):
            connected = False


async def _discard_screen(game: PlayerProcess) -> None:
    while await game.read():
        pass


async def _client_to_game(process: asyncssh.SSHServerProcess[bytes], game: PlayerProcess) -> None:
    """The player's keys to the game, and window-size changes to its terminal; returns when they leave."""
    while True:
        try:
            data = await process.stdin.read(65536)
        except asyncssh.TerminalSizeChanged as change:
            game.resize(TermSize(change.width, change.height, change.pixwidth, change.pixheight))
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue  # signals are not the player's to send; Ctrl+C reaches the game as a key
        except (OSError, asyncssh.Error):
            return
        if not data:
            return
        try:
            await game.write(data)
        except OSError:  # the game has closed its terminal
            return


class _Gate(asyncssh.SSHServer):
    """One connection's authentication: the players' credentials, behind the address throttle."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.conn: asyncssh.SSHServerConnection | None = None
        self.address = "?"
        self.connected_at = time.monotonic()
        self.username: str | None = None  # the last user name the client asked for
        self.key_refused = False
        self.counted = False  # one of this connection's failures is counted already
        self.logged_in = False
        self.shut_out = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        self.connected_at = time.monotonic()
        self.host.throttle.forget_old()
        self.host.arrived(self)

    def progress(self) -> int:
        """How far this connection has got towards a login; a full waiting room closes the least advanced.
        2: it asked to log in (after a key exchange); 1: on its way (it sent its SSH version line, or it
        connected too recently to have sent it); 0: it has said nothing since it connected: idle."""
        if self.username is not None:
            return 2
        if self.conn is not None and self.conn.get_extra_info("client_version"):
            return 1
        return 1 if time.monotonic() - self.connected_at < _SILENT_GRACE_S else 0

    def close_waiting(self) -> None:
        """Pushed out of a full waiting room: told why, closed now (before its key exchange if it has not
        begun one: an idle connection costs no CPU)."""
        if self.conn is not None:
            self.conn.disconnect(
                asyncssh.DISC_TOO_MANY_CONNECTIONS, "Too many connections waiting to log in; try again."
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn = None
        self.host.waiting_room.leave(self)
        # A connection that asked to log in and ended without getting in counts once, whatever it
        # offered on the way: every key of an agent is offered in turn, and only the end says that
        # none of them was right.
        if self.username is not None and not (self.logged_in or self.counted or self.shut_out):
            self._failed(self.username, "key" if self.key_refused else "no key or password")

    def begin_auth(self, username: str) -> bool:
        self.username = username
        self._refuse_if_blocked()
        return True  # everyone authenticates; unknown users fail like wrong keys do

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called for each key the client offers (and again for the one it then signs with): a key
        # offered and refused is no failure by itself; the connection's end is (connection_lost).
        self.username = username
        if self._refuse_if_blocked():
            return False
        allowed = self.host.credentials.key_allowed(username, key)
        self.key_refused |= not allowed
        return allowed

    def password_auth_supported(self) -> bool:
        return self.host.credentials.any_password

    async def validate_password(self, username: str, password: str) -> bool:
        self.username = username
        if self._refuse_if_blocked():
            return False
        allowed: bool | None = False
        try:
            allowed = await self._check_password(username, password)
        finally:
            # Counted even when asyncssh cancels the check because the client sent its next request
            # meanwhile: pipelined guesses count like the others.
            if allowed is False:
                self._failed(username, "password")
        # Checked again after the wait: guesses on other connections may have shut the address out
        # meanwhile, and then a right password does not get in either.
        if self._refuse_if_blocked():
            return False
        return bool(allowed)

    async def _check_password(self, username: str, password: str) -> bool | None:
        """scrypt in a thread, at most `_PASSWORD_CHECKS` at once host-wide; None if the address was
        shut out while this waited for its turn. A check stays in its slot until its thread ends, even
        if cancelled, so cancelling checks cannot pile scrypt runs up."""
        slots = self.host.password_checks
        await slots.acquire()
        try:
            if self.host.throttle.blocked_for(self.address):
                slots.release()
                return None
            check = asyncio.get_running_loop().run_in_executor(
                None, self.host.credentials.password_allowed, username, password
            )
        except BaseException:
            slots.release()
            raise
        check.add_done_callback(lambda _: slots.release())
        return await asyncio.shield(check)

    def auth_completed(self) -> None:
        self.logged_in = True
        self.host.waiting_room.leave(self)  # a player now: `max_sessions` counts them
        if self.username is not None:
            self.host.throttle.succeeded(self.address, self.username)
        log.info("login from %s accepted", self.address)

    def _refuse_if_blocked(self) -> bool:
        if not self.host.throttle.blocked_for(self.address):
            return False
        self._shut_out()
        return True

    def _failed(self, username: str, method: str) -> None:
        self.counted = True
        log.info("login from %s refused: %s for user %r", self.address, method, username)
        if self.host.throttle.failed(self.address, username):
            log.warning(
                "%s shut out for %.0f s after repeated failed logins", self.address, self.host.config.auth_block_seconds
            )
            self._shut_out()

    def _shut_out(self) -> None:
        seconds = self.host.throttle.blocked_for(self.address)
        if self.conn is not None and not self.shut_out:
            self.shut_out = True
            self.conn.disconnect(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                f"Too many failed logins from {self.address}; try again in {max(1, round(seconds / 60))} min.",
            )


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit, and log what it got.

    Each player costs the host a socket and a pty, and each waiting connection a socket: the usual soft
    limit (1024) is enough for the caps by default, but not for a host configured for many players.
    The hard limit is the administrator's to set (systemd: LimitNOFILE=, docs/hosting.md)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else _most_open_files()
    if soft == resource.RLIM_INFINITY or wanted <= soft:
        log.info("open files: at most %d (the hard limit)", soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        log.warning("open files: at most %d; raising it to %d failed (%s)", soft, wanted, error)
        return
    log.info("open files: at most %d (raised from %d to the hard limit)", wanted, soft)


def _most_open_files() -> int:
    """With no hard limit, the kernel's own ceiling (a soft limit above it is refused)."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


def _exit_on(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_host(config_path: Path) -> int:
    from .config import load_host_config

    loaded = load_host_config(config_path)
    room_titles = check_rooms(loaded)
    handler = logging.StreamHandler()  # besides the log file: systemd's journal shows who came and went
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    raise_open_files_limit()
    # Until serve() takes them over, SIGTERM and SIGHUP end the host through `finally` (Python's
    # default would kill it on the spot, and leave the llama-server it started running).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on)
    shared: LlamaServer | None = None
    try:
        shared = start_shared_server(loaded) if loaded.config.shared_server else None
        arguments = model_arguments(loaded, shared)
        # The server's key reaches the games in their environment only (settings.API_KEY_VARIABLE).
        game_env = {"SIMULARITY_API_KEY": shared.api_key} if shared is not None else {}
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(Host(loaded, arguments, game_env, room_titles).serve())
        return 130
    finally:
        if shared is not None:
            shared.stop()
