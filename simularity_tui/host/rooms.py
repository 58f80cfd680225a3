"""The host's rooms: each `[rooms.NAME]` is a process of its own (`simularity room serve`), started on
the room's first join (or when one of its players logs in: their library lists it) and kept until
the host stops, which stops it (it saves, KV state and all); one that ends meanwhile is started again.

The room listens on a Unix socket in the room's directory, which only the host's user can open; each
player's game reaches it with a key of its own (made at each start, handed to the game in its
environment), and the key says who they are. The room plays on the host's model like a game does:
the shared model file, or a slot of its own on the host's llama-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserFacingError
from ..room.doors import RoomDoor, doors_variable
from ..room.rules import ANY_CHARACTER, RoomLaunch, role_in
from ..scenario import PackProblems, load_pack
from ..toml_source import Problem, TomlProblems, locate, read_text_file
from .config import LoadedHostConfig
from .player_process import PlayerDirs, game_command, game_environment

log = logging.getLogger("simularity.host")

ROOM_SAVE = "room"  # the room's save, in the room's own data directory
_READY_TIMEOUT_S = 600.0  # a room's first start prepares and loads the model
_STOP_GRACE_S = 30.0  # a stopping room writes its KV state file
_MAX_SOCKET_PATH = 100  # AF_UNIX paths end at 107 bytes
# A room whose process ends while the host runs (a crash) is started again, so that its players'
# screens, which keep trying, find it; not more often than this, so a room that keeps failing rests.
_RESTARTS_PER_HOUR = 5


def check_rooms(loaded: LoadedHostConfig) -> dict[str, str]:
    """What host.toml cannot say alone: each room's pack loads and has the episode and the characters
    its table names. Problems are `host.toml:line:col` problems, all at once. Returns each room's
    title (its pack's name) for the players' libraries."""
    problems: list[Problem] = []
    titles: dict[str, str] = {}
    source = read_text_file(loaded.path) if loaded.config.rooms else ""

    def problem(key_path: list[str | int], message: str) -> None:
        line, col = locate(source, key_path)
        problems.append(Problem(loaded.path, line, col, message))

    for name, room in loaded.config.rooms.items():
        pack_dir = loaded.room_pack(name)
        try:
            pack = load_pack(pack_dir).pack
        except PackProblems as error:
            problem(["rooms", name, "pack"], f"the pack {pack_dir} has problems: {error.problems[0]}")
            continue
        except UserFacingError as error:
            problem(["rooms", name, "pack"], error.message)
            continue
        titles[name] = pack.name
        if room.episode and room.episode not in pack.episodes:
            problem(["rooms", name, "episode"], f"no episode '{room.episode}'; the pack has {', '.join(pack.episodes)}")
        for player, character in room.characters.items():
            if character != ANY_CHARACTER and character not in pack.characters:
                problem(
                    ["rooms", name, "characters", player],
                    f"no character '{character}'; the pack has {', '.join(pack.characters)}",
                )
        socket = loaded.room_dir(name) / "room.sock"
        if len(os.fsencode(socket)) > _MAX_SOCKET_PATH:
            problem(["rooms", name], f"the room's socket path {socket} is too long; set a shorter `data_dir`")
    if problems:
        raise TomlProblems(problems, hint=f"Fix {loaded.path}; docs/hosting.md has a room's example.")
    return titles


class RoomUnavailable(Exception):
    """A room's process could not start (its pack, its model): the reason, for the player."""


@dataclass
class _Room:
    name: str
    keys: dict[str, str]  # player -> key
    process: asyncio.subprocess.Process | None = None
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    restarts: list[float] = field(default_factory=list)  # when its process was started again


class RoomProcesses:
    def __init__(
        self, loaded: LoadedHostConfig, model_args: list[str], game_env: dict[str, str], titles: dict[str, str]
    ) -> None:
        self.loaded = loaded
        self.titles = titles
        self.model_args = model_args
        self.game_env = game_env
        players = loaded.config.players
        self.rooms = {
            name: _Room(name, {player: secrets.token_urlsafe(24) for player in players}) for name in loaded.config.rooms
        }
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()  # held here: the loop keeps tasks only weakly

    def doors(self, player: str) -> list[RoomDoor]:
        """The rooms `player` may join, as the player's game is told them."""
        doors = []
        for name, room in self.rooms.items():
            role = role_in(self.loaded.config.rooms[name], player)
            if role is not None:
                doors.append(
                    RoomDoor(name, self.titles.get(name, name), str(self._socket(name)), room.keys[player], role)
                )
        return doors

    def environment(self, player: str) -> dict[str, str]:
        """What a player's game is told of the rooms (room/doors.py)."""
        return doors_variable(self.doors(player))

    def _socket(self, name: str) -> Path:
        return self.loaded.room_dir(name) / "room.sock"

    async def open(self, name: str, slot: int | None) -> None:
        """The room's process, started if it is not running; RoomUnavailable if it cannot start."""
        room = self.rooms[name]
        async with room.starting:
            if room.process is not None and room.process.returncode is None:
                return
            room.process = await self._start(name, room, slot)
        self._keep(self._watch(room, room.process, slot))

    def _keep(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch(self, room: _Room, process: asyncio.subprocess.Process, slot: int | None) -> None:
        """Start the room again if its process ends while the host runs (its save is on disk)."""
        status = await process.wait()
        if self._stopping or room.process is not process:
            return
        now = time.monotonic()
        room.restarts = [at for at in room.restarts if now - at < 3600]
        if len(room.restarts) >= _RESTARTS_PER_HOUR:
            log.error(
                "room %s: its process ended (status %d), again; not started until someone joins", room.name, status
            )
            return
        room.restarts.append(now)
        log.warning("room %s: its process ended (status %d); starting it again", room.name, status)
        with contextlib.suppress(RoomUnavailable):
            await self.open(room.name, slot)

    async def _start(self, name: str, room: _Room, slot: int | None) -> asyncio.subprocess.Process:
        """The room's process, once it says it is ready; RoomUnavailable (with the room's own words,
        or the system's) when it cannot start."""
        try:
            return await self._spawn(name, room, slot)
        except OSError as error:  # out of processes, a data_dir it cannot write
            raise RoomUnavailable(f"it cannot start ({error.strerror or error})") from None

    async def _spawn(self, name: str, room: _Room, slot: int | None) -> asyncio.subprocess.Process:
        root = self.loaded.room_dir(name)
        dirs = PlayerDirs(root)
        for directory in (root, dirs.config, dirs.data, dirs.cache):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.loaded.config.rooms[name]
        launch = RoomLaunch(
            name=name,
            config=config,
            pack_dir=str(self.loaded.room_pack(name)),
            socket=str(self._socket(name)),
            save=ROOM_SAVE,
            keys={key: player for player, key in room.keys.items()},
        )
        launch_file = root / "launch.json"
        descriptor = os.open(launch_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(launch.model_dump_json())
        arguments = [*self.model_args, *(["--server-slot", str(slot)] if slot is not None else [])]
        argv = game_command(["room", "serve", "--launch", str(launch_file), *arguments])
        log_path = root / "room.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env={**game_environment(dirs, None), **self.game_env},
                cwd=root,
                start_new_session=True,  # the host's Ctrl+C is the host's to handle
            )
        log.info("room %s: starting (process %d, log %s)", name, process.pid, log_path)
        assert process.stdout is not None
        try:
            ready = await asyncio.wait_for(_ready(process.stdout), _READY_TIMEOUT_S)
        except TimeoutError:
            ready = False
        except BaseException:  # the host stops (or this session ends) while the room starts: it goes too
            await asyncio.shield(_end(process))
            raise
        if not ready:
            await _end(process)
            raise RoomUnavailable(_last_words(log_path))
        log.info("room %s: ready", name)
        self._keep(_drain(process.stdout))
        return process

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*(_end(room.process) for room in self.rooms.values() if room.process is not None))


async def _end(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the room saves, KV state and all), then SIGKILL if it does not end."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
        except TimeoutError:
            log.warning("room process %d did not stop within %.0f s: killed", process.pid, _STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _ready(stream: asyncio.StreamReader) -> bool:
    """Whether the room's process says it is ready (`room NAME: ready on …`) before its output ends."""
    while line := await stream.readline():
        if line.startswith(b"room ") and b": ready on " in line:
            return True
    return False


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def _last_words(log_path: Path) -> str:
    """The room's own account of why it did not start: the last lines of its log."""
    with contextlib.suppress(OSError):
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("simularity:") or line.startswith("  ")]
        if said:
            return " ".join(line.strip() for line in said[-2:])
        if lines:
            return lines[-1].strip()
    return "it ended without saying why (see the host's data_dir/rooms)"
