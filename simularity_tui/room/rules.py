"""A room's rules: the `[rooms.NAME]` table of host.toml, and what the host hands the room's process.

Validated with the rest of host.toml (file:line:col problems); the host then checks what needs the
pack (its episode, the characters named), and passes the room's process a `RoomLaunch` as JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A player's name is a directory name under the host's data_dir/players/ and an SSH user name: plain.
PLAYER_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
ROOM_NAME = r"^[a-z0-9_][a-z0-9_-]{0,31}$"
ANY_CHARACTER = "any"

RoomMode = Literal["free", "round", "gm"]
Role = Literal["player", "gm", "spectator"]  # the gm directs: narration, no character of their own
PlayerName = Annotated[str, Field(pattern=PLAYER_NAME)]


class RoomConfig(BaseModel):
    """`[rooms.NAME]`: one story several players share."""

    model_config = ConfigDict(extra="forbid")

    pack: Annotated[str, Field(min_length=1, description="The pack's directory (relative to host.toml).")]
    episode: Annotated[str, Field(description="The episode the room plays; empty: the pack's first.")] = ""
    players: Annotated[list[PlayerName], Field(min_length=1, description="Who may join and play.")]
    characters: Annotated[
        dict[PlayerName, str],
        Field(description=f'The cast character each player plays; unset or "{ANY_CHARACTER}": a free one.'),
    ] = {}
    mode: Annotated[
        RoomMode,
        Field(description="free: anyone speaks, in arrival order; round: in turn, with a time limit; gm: one directs."),
    ] = "free"
    gm: Annotated[str, Field(description='The player who directs (mode = "gm").')] = ""
    changes: Annotated[
        Literal["gm", "vote"],
        Field(description="Who may undo, regenerate or edit a line: the gm, or a majority of the players present."),
    ] = "vote"
    spectators: Annotated[bool, Field(description="Whether players not in `players` may watch.")] = False
    turn_seconds: Annotated[float, Field(ge=10, le=3600, description="round: a player's time to speak.")] = 120.0
    max_line_chars: Annotated[int, Field(ge=20, le=4000, description="The longest line a player may send.")] = 500
    lines_per_minute: Annotated[int, Field(ge=1, le=120, description="Lines one player may send a minute.")] = 10
    grace_seconds: Annotated[
        float, Field(ge=0, le=86400, description="How long a dropped player keeps their character.")
    ] = 120.0
    on_leave: Annotated[
        Literal["model", "silent"],
        Field(description="After the grace period: the model plays the character again, or it stays silent."),
    ] = "model"

    @model_validator(mode="after")
    def _consistent(self) -> RoomConfig:
        if len(set(self.players)) != len(self.players):
            raise ValueError("a player is listed twice in `players`")
        strangers = sorted(set(self.characters) - set(self.players))
        if strangers:
            raise ValueError(f"`characters` names {', '.join(strangers)}, not in this room's `players`")
        chosen = [c for c in self.characters.values() if c != ANY_CHARACTER]
        if len(set(chosen)) != len(chosen):
            raise ValueError("two players are given the same character in `characters`")
        if self.mode == "gm" and self.gm not in self.players:
            raise ValueError('mode = "gm" needs `gm`, one of the room\'s `players`')
        if self.gm and self.mode != "gm":
            raise ValueError('`gm` is for mode = "gm"')
        if self.gm in self.characters:
            raise ValueError("the gm directs and holds no character: leave them out of `characters`")
        if self.changes == "gm" and self.mode != "gm":
            raise ValueError('changes = "gm" needs mode = "gm" (and a `gm`)')
        return self


def role_in(config: RoomConfig, player: str) -> Role | None:
    """How the host's player `player` may be in a room: playing, directing, watching, or not at all."""
    if player in config.players:
        return "gm" if config.mode == "gm" and player == config.gm else "player"
    return "spectator" if config.spectators else None


class RoomLaunch(BaseModel):
    """What the host hands a room's process (JSON in a file only the host's user reads)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    config: RoomConfig
    pack_dir: str  # absolute
    socket: str  # the Unix socket the room listens on
    save: str  # the save's name (in the room's own data directory)
    # Each member's key: the host gives each player's game the key of the rooms they may join, in its
    # environment; the key says who connects (every game runs as the host's user).
    keys: dict[str, str]  # key -> the host player it stands for (one not in `players` watches)
