"""KV state files: a context's sequence saved beside a save game, so resuming skips re-evaluation.

A file holds a JSON header and llama.cpp's sequence state (`llama_state_seq_get_data`). The header
names the model (a digest of the GGUF's size, head and tail), the llama-cpp-python build (state
layouts change between versions), the token list the state holds with its layout, and the payload's
sha256. Any mismatch or damage makes the file unusable: the caller then warns and re-evaluates,
which costs time but never correctness.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import llama_cpp

from ..atomic import atomic_writer

MAGIC = b"SIMULARITY-KV\n"
FORMAT = 1
_IDENTITY_SPAN = 1 << 20


class StateFileError(Exception):
    """Why a state file cannot be used (said to the player as a warning, not an error)."""


@dataclass(frozen=True)
class StateHeader:
    format: int
    runtime: str
    model: str
    n_keep: int
    turn_starts: list[int]
    first_turn: int
    tokens: list[int]
    payload_sha256: str
    payload_size: int


def model_identity(path: Path) -> str:
    """A cheap fingerprint of a model file: its size and its first and last MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_IDENTITY_SPAN))
        handle.seek(max(0, size - _IDENTITY_SPAN))
        digest.update(handle.read(_IDENTITY_SPAN))
    return digest.hexdigest()


def runtime_version() -> str:
    return f"llama-cpp-python {llama_cpp.__version__}"


def write_state(
    path: Path,
    payload: bytes,
    *,
    model: str,
    n_keep: int,
    turn_starts: Sequence[int],
    first_turn: int,
    tokens: Sequence[int],
) -> None:
    header = StateHeader(
        format=FORMAT,
        runtime=runtime_version(),
        model=model,
        n_keep=n_keep,
        turn_starts=list(turn_starts),
        first_turn=first_turn,
        tokens=list(tokens),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_size=len(payload),
    )
    encoded = json.dumps(asdict(header), separators=(",", ":")).encode()
    with atomic_writer(path) as handle:
        handle.write(MAGIC)
        handle.write(struct.pack("<I", len(encoded)))
        handle.write(encoded)
        handle.write(payload)


def read_state(path: Path, *, model: str) -> tuple[StateHeader, bytes]:
    """The header and payload of `path`, checked against `model` and this runtime."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StateFileError(f"{path.name} does not exist") from None
    except OSError as error:
        raise StateFileError(f"{path.name} cannot be read ({error.strerror})") from None
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise StateFileError(f"{path.name} is not a Simularity KV state file")
    (header_size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        fields = json.loads(data[start : start + header_size])
        header = StateHeader(**fields)
    except (ValueError, TypeError):
        raise StateFileError(f"{path.name} has a damaged header") from None
    if header.format != FORMAT:
        raise StateFileError(f"{path.name} is in state format {header.format}; this version reads {FORMAT}")
    if header.runtime != runtime_version():
        raise StateFileError(f"{path.name} was written by {header.runtime}; this is {runtime_version()}")
    if header.model != model:
        raise StateFileError(f"{path.name} was written for another model")
    payload = data[start + header_size :]
    if len(payload) != header.payload_size or hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise StateFileError(f"{path.name} is damaged (its checksum does not match)")
    return header, payload
