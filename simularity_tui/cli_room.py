"""`simularity room serve|join`: the two halves of a shared story, which `simularity host` starts.

`serve --launch FILE` plays one room (room/server.py) on the model the options name; `join NAME`
opens a player's screen on a room they may join (room/doors.py: the host says which, and who they are).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import UserFacingError
from .first_frame import GRAPHICS_MODES

if TYPE_CHECKING:
    from .settings import GraphicsMode, Settings


def add_room_command(commands: Any, model_options: argparse.ArgumentParser) -> None:
    room = commands.add_parser("room", help="a shared story's process or a player's screen on it (simularity host)")
    actions = room.add_subparsers(dest="room_action", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", parents=[model_options], help="play one room on a Unix socket")
    serve.add_argument("--launch", type=Path, required=True, metavar="FILE", help="the room, as the host wrote it")
    join = actions.add_parser("join", help="join a room the host lets you join")
    join.add_argument("name", metavar="NAME")
    join.add_argument("--graphics", choices=GRAPHICS_MODES, help="how to draw the stage (default: as in settings.toml)")


def room_command(args: argparse.Namespace, settings: Callable[[], Settings]) -> int:
    """`settings`: the player's settings with the command line's model options (read for `serve` only)."""
    if args.room_action == "serve":
        return _serve(args, settings())
    return join_room(args.name, getattr(args, "graphics", None))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from .model_session import open_model_session
    from .room.rules import RoomLaunch

    try:
        launch = RoomLaunch.model_validate_json(args.launch.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserFacingError(f"{args.launch}: not a room the host wrote ({error})", path=args.launch) from None

    async def serve() -> int:
        from .room.server import serve_room

        session = await open_model_session(settings, getattr(args, "model", None))
        try:
            return await serve_room(launch, session, sampling=settings.sampling_params(), budgets=settings.budgets())
        finally:
            await session.close()

    return asyncio.run(serve())


def join_room(name: str, graphics: str | None) -> int:
    from .room.doors import room_doors

    doors = {door.name: door for door in room_doors()}
    door = doors.get(name)
    if door is None:
        listed = ", ".join(sorted(doors)) or "none"
        raise UserFacingError(f"No room '{name}' for you here.", hint=f"Rooms you may join: {listed}.")
    from .first_frame import read_first_frame_settings
    from .ui.room_app import RoomApp
    from .ui.terminal_graphics import prepare_terminal_graphics

    shown = read_first_frame_settings(None)
    mode = cast("GraphicsMode", graphics or shown.graphics)
    prepare_terminal_graphics(mode)  # before Textual takes the terminal (cli._play says why)
    app = RoomApp(door, mode, shown.theme)
    app.run()
    if app.farewell:
        print(f"simularity: {app.farewell}", file=sys.stderr)
    return 0
