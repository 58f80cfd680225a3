"""The host's SSH key: made once (ed25519) and kept, so players' `known_hosts` entries stay valid.

The file is created with mode 0600 from the start (never world-readable, not even for an instant)
and, like OpenSSH, the host refuses a key file others can read: someone may have copied it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import asyncssh

from ..errors import UserFacingError

KEY_FILE_NAME = "ssh_host_ed25519_key"


def load_or_create_host_key(data_dir: Path) -> asyncssh.SSHKey:
    path = data_dir / KEY_FILE_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _create(path)
        mode = path.stat().st_mode
    except OSError as error:
        raise UserFacingError(
            f"{path}: cannot write the host key ({error.strerror})",
            hint="Set data_dir in the host config to a directory the host may write.",
            path=path,
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserFacingError(
            f"{path}: the host key may be read by other users (mode {stat.filemode(mode)})",
            hint=f"chmod 600 {path}; if it may have been copied, delete it and a new key is made.",
            path=path,
        )
    try:
        return asyncssh.read_private_key(path)
    except (asyncssh.KeyImportError, OSError) as error:
        raise UserFacingError(
            f"{path}: not a usable host key ({error})",
            hint="Delete the file: a new key is made at the next start (players then see a changed host key).",
            path=path,
        ) from None


def _create(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="simularity host")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key.export_private_key())
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if the key appeared meanwhile (two hosts started at once): both then use that one.
        os.link(temporary, path)
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def fingerprint(key: asyncssh.SSHKey) -> str:
    """As `ssh` shows it on first connection ("SHA256:…"), for players to compare."""
    return key.get_fingerprint("sha256")
