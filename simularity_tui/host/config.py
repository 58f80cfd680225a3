"""`host.toml`: where the SSH host listens, who may play, and what model the players share.

Validated like every other TOML file of the product: unknown keys, wrong types, keys that do not
parse and bad player names are reported as `file:line:col` problems, all at once.
Relative paths (`data_dir`, `model`) are read from the config file's own directory, so a config
works the same whatever directory the host is started from (systemd starts it in /).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import paths
from ..engine.chat_template import TemplateChoice
from ..engine.remote.config import checked_url
from ..room.rules import PLAYER_NAME, ROOM_NAME, RoomConfig
from ..toml_source import load_model
from .passwords import is_password_hash


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlayerConfig(_Strict):
    keys: Annotated[list[str], Field(description="OpenSSH public key lines, as in authorized_keys.")] = []
    password_hash: Annotated[
        str | None, Field(description="From `simularity host --hash-password`; unset: keys only.")
    ] = None

    @field_validator("keys")
    @classmethod
    def _keys_parse(cls, keys: list[str]) -> list[str]:
        for index, line in enumerate(keys):
            try:
                asyncssh.import_public_key(line.strip())
            except (asyncssh.KeyImportError, ValueError) as error:
                raise ValueError(
                    f"key {index + 1} is not an OpenSSH public key ({error}); "
                    "paste one line of ~/.ssh/id_ed25519.pub, e.g. 'ssh-ed25519 AAAA… you@laptop'"
                ) from None
        return keys

    @field_validator("password_hash")
    @classmethod
    def _hash_is_ours(cls, value: str | None) -> str | None:
        if value is not None and not is_password_hash(value):
            raise ValueError("not a password hash; make one with `simularity host --hash-password`")
        return value

    @model_validator(mode="after")
    def _some_way_in(self) -> PlayerConfig:
        if not self.keys and self.password_hash is None:
            raise ValueError("a player needs `keys = [...]` or a `password_hash`, or nobody can log in as them")
        return self

    def public_keys(self) -> list[asyncssh.SSHKey]:
        return [asyncssh.import_public_key(line.strip()) for line in self.keys]


class HostConfig(_Strict):
    listen: Annotated[str, Field(description="Address to listen on; 127.0.0.1 for this machine only.")] = "0.0.0.0"
    port: Annotated[int, Field(ge=1, le=65535)] = 2222
    max_sessions: Annotated[int, Field(ge=1, le=256, description="Players playing at once, all together.")] = 8
    max_sessions_per_player: Annotated[
        int,
        Field(
            ge=1,
            le=16,
            description="Two sessions of one player would write the same saves; one more login takes over the oldest.",
        ),
    ] = 1
    data_dir: Annotated[str, Field(description="Host key and players' files; default: the data dir / host.")] = ""
    # What the players' games play on: one model file every process maps, or one inference server.
    model: Annotated[str, Field(description="A GGUF file; empty: the embedded model.")] = ""
    backend: Annotated[str, Field(description="An OpenAI-compatible server URL instead of a model file.")] = ""
    shared_server: Annotated[
        bool,
        Field(
            description="Start one llama-server for every game (a slot per player, the model loaded once): "
            "the games load no model."
        ),
    ] = False
    llama_server: Annotated[
        str, Field(description="The llama-server binary for shared_server; empty: the [server] extra's, or PATH's.")
    ] = ""
    # Always passed to the games, so a player's own settings cannot ask the host for more memory or CPU.
    n_ctx: Annotated[int, Field(ge=256, le=1 << 20, description="Each game's context in tokens.")] = 4096
    threads: Annotated[
        int,
        Field(
            ge=0,
            le=512,
            description="CPU threads per game (a shared server gets as many per slot); 0: the physical cores.",
        ),
    ] = 0
    gpu_layers: Annotated[
        Annotated[int, Field(ge=-1)] | Literal["auto"],
        Field(description='Layers each game offloads to the GPU; -1: all; "auto": as many as fit (simularity doctor).'),
    ] = 0
    template: Annotated[
        TemplateChoice, Field(description="Each game's chat frame: auto (the model's own), raw, or a preset.")
    ] = "auto"
    max_auth_failures: Annotated[int, Field(ge=1, le=1000, description="Failed logins per address per window.")] = 5
    auth_window_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    auth_block_seconds: Annotated[float, Field(ge=0, le=7 * 86400, description="How long an address is shut out.")] = (
        300.0
    )
    hangup_grace_seconds: Annotated[
        float, Field(ge=0, le=120, description="Time a dropped player's game has to save and exit.")
    ] = 10.0
    # Connections that have not logged in yet (the "waiting room"): each costs a socket and some memory
    # before anyone knows who it is, so they are capped; a full room closes the idlest (waiting_room.py).
    max_unauthenticated: Annotated[
        int,
        Field(
            ge=1, le=10000, description="Connections not logged in yet, all together; past it, the idlest is closed."
        ),
    ] = 64
    max_unauthenticated_per_address: Annotated[
        int, Field(ge=1, le=10000, description="Connections not logged in yet from one address (IPv6: one /64).")
    ] = 8
    login_timeout_seconds: Annotated[
        float, Field(gt=0, le=600, description="Time a connection has to log in before it is closed.")
    ] = 20.0
    players: dict[Annotated[str, Field(pattern=PLAYER_NAME)], PlayerConfig] = {}
    rooms: Annotated[
        dict[Annotated[str, Field(pattern=ROOM_NAME)], RoomConfig],
        Field(description="Shared stories: several players in one story (docs/hosting.md, Rooms)."),
    ] = {}

    @field_validator("backend")
    @classmethod
    def _backend_is_url(cls, value: str) -> str:
        # The same check the game makes of `--backend`: a URL it would refuse (`http://`, a bad port)
        # is reported here, at the host's start, not as every player's game dying at login.
        return checked_url(value) if value.strip() else ""

    @model_validator(mode="after")
    def _one_model(self) -> HostConfig:
        if self.model and self.backend:
            raise ValueError("set `model` or `backend`, not both")
        if self.shared_server and self.backend:
            raise ValueError("set `shared_server` (the host starts llama-server) or `backend` (one running), not both")
        if self.llama_server and not self.shared_server:
            raise ValueError("`llama_server` is used with `shared_server = true` only")
        if self.max_unauthenticated_per_address > self.max_unauthenticated:
            raise ValueError(
                f"max_unauthenticated_per_address ({self.max_unauthenticated_per_address}) is above "
                f"max_unauthenticated ({self.max_unauthenticated}); one address can never have more than all"
            )
        if not self.players:
            raise ValueError('no players: add a table such as [players.alice] with keys = ["ssh-ed25519 AAAA…"]')
        for name, room in self.rooms.items():
            strangers = sorted(set(room.players) - set(self.players))
            if strangers:
                raise ValueError(f"rooms.{name}.players: {', '.join(strangers)} have no [players.NAME] table")
        return self


class LoadedHostConfig:
    """The validated config and the paths it names, made absolute."""

    def __init__(self, path: Path, config: HostConfig) -> None:
        self.path = path
        self.config = config
        base = path.resolve().parent
        self.data_dir = base / Path(config.data_dir).expanduser() if config.data_dir else paths.data_dir() / "host"
        self.model = base / Path(config.model).expanduser() if config.model else None
        self.llama_server = str(base / Path(config.llama_server).expanduser()) if config.llama_server else ""

    def model_file(self) -> Path:
        """The GGUF every game maps (or the shared server loads): `model`, or the embedded one,
        prepared here once; a clear error where `model` names no file."""
        from ..engine.embedded_model import prepare_embedded_model
        from ..errors import UserFacingError

        model = self.model or prepare_embedded_model(paths.cache_dir())
        if not model.is_file():
            raise UserFacingError(
                f"{self.path}: the model {model} does not exist",
                hint="Set `model` to a GGUF file, or leave it out to play on the embedded model.",
                path=self.path,
            )
        return model

    def player_dir(self, name: str) -> Path:
        return self.data_dir / "players" / name

    def room_dir(self, name: str) -> Path:
        return self.data_dir / "rooms" / name

    def room_pack(self, name: str) -> Path:
        return self.path.resolve().parent / Path(self.config.rooms[name].pack).expanduser()

    @property
    def server_slots(self) -> int:
        """Slots a shared server needs: one per game at once, and one per room."""
        return self.config.max_sessions + len(self.config.rooms)


def load_host_config(path: Path) -> LoadedHostConfig:
    hint = f"Fix {path}; docs/hosting.md shows a complete example."
    config = load_model(path, HostConfig, hint=hint)
    assert isinstance(config, HostConfig)
    return LoadedHostConfig(path, config)
