"""The rooms a player may join, as the host tells their game: in the environment (`SIMULARITY_ROOMS`),
never on a command line (anyone on the machine can read those), each with the key that says who the
player is to the room."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from ..errors import UserFacingError

ROOMS_VARIABLE = "SIMULARITY_ROOMS"


@dataclass(frozen=True)
class RoomDoor:
    """A room a player may join: its name and title, where its socket is, their key, and their part."""

    name: str
    title: str
    socket: str
    key: str
    role: str  # "player", "gm" or "spectator", as the host's config says


def doors_variable(doors: list[RoomDoor]) -> dict[str, str]:
    """The environment that tells a player's game its doors."""
    return {ROOMS_VARIABLE: json.dumps([asdict(door) for door in doors])}


def room_doors(environ: dict[str, str] | None = None) -> list[RoomDoor]:
    """The rooms the host says this player may join (none outside a host)."""
    raw = (environ if environ is not None else dict(os.environ)).get(ROOMS_VARIABLE, "")
    if not raw:
        return []
    try:
        return [RoomDoor(**door) for door in json.loads(raw)]
    except (ValueError, TypeError) as error:
        raise UserFacingError(f"{ROOMS_VARIABLE} is not the host's list of rooms ({error})") from None
