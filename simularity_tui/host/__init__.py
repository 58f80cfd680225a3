"""The SSH host: `simularity host --config host.toml` lets several players play over plain `ssh`.

Modules, one job each: config (host.toml), passwords (salted hashes), auth (credentials and the
failed-login throttle), waiting_room (the cap on connections not logged in yet), host_key (made once,
kept), player_process (a game on a pty), server (ties them together with asyncssh). See
docs/hosting.md.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..errors import UserFacingError


def host_command(args: argparse.Namespace) -> int:
    if args.hash_password:
        return print_password_hash()
    if args.config is None:
        raise UserFacingError(
            "simularity host needs a config: simularity host --config host.toml",
            hint="docs/hosting.md has an example with one [players.NAME] table per player.",
        )
    from .server import run_host

    return run_host(args.config)


def print_password_hash() -> int:
    """Read a password (twice at a terminal; one line from a pipe) and print its hash for host.toml."""
    from .passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UserFacingError("the two passwords differ", hint="Run it again and type the same password twice.")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise UserFacingError("that password is too short (under 8 characters)", hint="Choose a longer one.")
    print(f'password_hash = "{hash_password(password)}"')
    return 0
