"""KV state files: a context's sequence saved beside a save game, so resuming skips re-evaluation.

A file holds a JSON header and llama.cpp's state of the whole KV (`llama_state_seq_get_data`). The header
names the model (a digest of the GGUF's size, head and tail), the llama-cpp-python build (state
layouts change between versions), the token list the state holds with its layout, and a sha256 of
the header's other fields and the payload together. Any mismatch or damage makes the file
unusable: the caller then warns and re-evaluates, which costs time but never correctness.

llama.cpp trusts what it reads: a sequence state with garbled cell positions trips its assertions,
and NaNs in the keys or values reach the logits, where the grammar sampler aborts the process. A
file that was damaged and then given a matching checksum (by hand, or by another program) must not
take the game down, so `check_payload` reads the payload's layout itself before llama.cpp does
and refuses anything that is not the state of exactly the header's tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_writer

MAGIC = b"SIMULARITY-KV\n"
# 3: the checksum covers the header too (format 1 checked only the payload); 4: every cell of every
# layer, each with the story's sequence ids (format 3 held the newest window of sliding layers only).
FORMAT = 4
# The header is mostly the token list as decimal digits: room for a context of 1 << 20 tokens of
# up to 7 digits, with their turn starts, and nothing bigger (a length field may be damaged too).
MAX_HEADER = 32 << 20
_IDENTITY_SPAN = 1 << 20

# llama.cpp's state of every sequence, as this runtime writes it (src/llama-context.cpp,
# llama-kv-cache.cpp): u32 magic, i32 sequence id (-1: all); then each KV cache in turn (one; two
# for interleaved sliding-window models such as Gemma 3): u32 streams (1), u32 cells, per cell
# (i32 position, u32 sequence ids n, n × i32 sequence id), u32 v_trans, u32 layers; per layer i32
# key type, u64 row size, a row per cell; per layer the values: i32 type, u64 row size, a row per
# cell (or, transposed: i32 type, u32 element size, u32 elements per cell, then the elements).
SEQ_STATE_MAGIC = 0xAF143CD8
EVERY_SEQUENCE = -1
_MAX_CACHES = 8
_MAX_LAYERS = 4096
# ggml types whose values can be checked for NaN and infinity: (item size, exponent mask).
_FLOAT_TYPES = {0: (4, 0x7F800000), 1: (2, 0x7C00), 30: (2, 0x7F80)}  # f32, f16, bf16
_Q8_0, _Q8_0_BLOCK = 8, 34  # a block: an f16 scale, then 32 signed bytes (a wrong byte is only a wrong number)
TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 8: "q8_0", 30: "bf16"}
_UINT: dict[int, np.dtype[Any]] = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


class StateFileError(Exception):
    """Why a state file cannot be used (said to the player as a warning, not an error)."""


class OtherCacheType(StateFileError):
    """The file holds a KV cache of another type than the context's (`[model] kv_cache` changed)."""


@dataclass(frozen=True)
class StateHeader:
    format: int
    runtime: str
    model: str
    n_keep: int
    turn_starts: list[int]
    first_turn: int
    tokens: list[int]
    payload_size: int
    sha256: str  # of the other fields (canonical JSON) followed by the payload


_FIELD_TYPES = {field.name: field.type for field in fields(StateHeader)}


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
    import llama_cpp  # here, not at the top: reading a header must not need llama.cpp built

    return f"llama-cpp-python {llama_cpp.__version__}"


def checksum(header: dict[str, Any], payload: bytes) -> str:
    """The sha256 of a header's fields (but the checksum itself) and the payload: a token list
    changed alone no longer passes for the one the state was saved with."""
    digest = hashlib.sha256()
    canonical = {name: value for name, value in header.items() if name != "sha256"}
    digest.update(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
    digest.update(payload)
    return digest.hexdigest()


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
    header: dict[str, Any] = {
        "format": FORMAT,
        "runtime": runtime_version(),
        "model": model,
        "n_keep": n_keep,
        "turn_starts": list(turn_starts),
        "first_turn": first_turn,
        "tokens": list(tokens),
        "payload_size": len(payload),
    }
    header["sha256"] = checksum(header, payload)
    encoded = json.dumps(asdict(StateHeader(**header)), separators=(",", ":")).encode()
    with atomic_writer(path) as handle:
        handle.write(MAGIC)
        handle.write(struct.pack("<I", len(encoded)))
        handle.write(encoded)
        handle.write(payload)


def read_state(path: Path, *, model: str) -> tuple[StateHeader, bytes]:
    """The header and payload of `path`, checked against `model` and this runtime (the payload's
    layout is `check_payload`'s to check)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StateFileError(f"{path.name} does not exist") from None
    except OSError as error:
        raise StateFileError(f"{path.name} cannot be read ({error.strerror})") from None
    header_size = _header_size(path, data[: len(MAGIC) + 4], len(data))
    start = len(MAGIC) + 4
    document, header = _checked_header(path, data[start : start + header_size], model)
    payload = data[start + header_size :]
    if len(payload) != header.payload_size or checksum(document, payload) != header.sha256:
        raise StateFileError(f"{path.name} is damaged (its checksum does not match)")
    return header, payload


def read_header(path: Path, *, model: str) -> StateHeader:
    """The header of `path` alone, checked as `read_state` checks it but for the checksum (which
    needs the whole payload read): what a resume weighs before it reads the rest."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header_size = _header_size(path, handle.read(len(MAGIC) + 4), size)
            encoded = handle.read(header_size)
    except FileNotFoundError:
        raise StateFileError(f"{path.name} does not exist") from None
    except OSError as error:
        raise StateFileError(f"{path.name} cannot be read ({error.strerror})") from None
    _document, header = _checked_header(path, encoded, model)
    if len(MAGIC) + 4 + header_size + header.payload_size != size:
        raise StateFileError(f"{path.name} is damaged (it is not as long as its header says)")
    return header


def _header_size(path: Path, prefix: bytes, file_size: int) -> int:
    """The header's length from the file's first bytes (`prefix`: the magic and the length)."""
    if not prefix.startswith(MAGIC) or len(prefix) < len(MAGIC) + 4:
        raise StateFileError(f"{path.name} is not a Simularity KV state file")
    (header_size,) = struct.unpack_from("<I", prefix, len(MAGIC))
    if header_size > MAX_HEADER or len(MAGIC) + 4 + header_size > file_size:
        raise StateFileError(f"{path.name} has a damaged header")
    return int(header_size)


def _checked_header(path: Path, encoded: bytes, model: str) -> tuple[dict[str, Any], StateHeader]:
    """The header's JSON document and fields, for this format, runtime and `model`."""
    damaged = StateFileError(f"{path.name} has a damaged header")
    try:
        document = json.loads(encoded)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise damaged from None
    if not isinstance(document, dict):
        raise damaged
    found = document.get("format")
    if isinstance(found, int) and not isinstance(found, bool) and found != FORMAT:
        raise StateFileError(f"{path.name} is in state format {found}; this version reads {FORMAT}")
    header = _header(document)
    if header is None:
        raise damaged
    if header.runtime != runtime_version():
        raise StateFileError(f"{path.name} was written by {header.runtime}; this is {runtime_version()}")
    if header.model != model:
        raise StateFileError(f"{path.name} was written for another model")
    return document, header


def _header(document: dict[str, Any]) -> StateHeader | None:
    """The header, if `document` has exactly its fields, each of its type (flat: a token list is a
    list of ints, nothing nests deeper), and a layout that fits its token list; else None."""
    if set(document) != set(_FIELD_TYPES):
        return None
    for name, kind in _FIELD_TYPES.items():
        value = document[name]
        if kind == "int" and not _is_int(value):
            return None
        if kind == "str" and not isinstance(value, str):
            return None
        if kind == "list[int]" and not (isinstance(value, list) and all(_is_int(item) for item in value)):
            return None
    header = StateHeader(**document)
    size = len(header.tokens)
    starts = header.turn_starts
    if (
        not 0 <= header.n_keep <= size
        or header.first_turn < 0
        or header.payload_size < 0
        or any(token < 0 for token in header.tokens)
        or any(not 0 <= start <= size for start in starts)
        or any(later < earlier for earlier, later in zip(starts, starts[1:]))
    ):
        return None
    return header


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_payload(payload: bytes, n_tokens: int, cache_type: int, sequences: tuple[int, ...]) -> None:
    """Raise StateFileError unless `payload` is a state llama.cpp can read safely and that holds
    exactly positions 0..n_tokens-1 in cells that each carry the sequence ids `sequences` (the
    story's, with its guard on a sliding-window model), with keys and values of the ggml type
    `cache_type` (OtherCacheType where they have another).

    Every cache must hold a cell for each position, every length must add up to the payload's
    size, and float keys and values must be numbers (no NaN, no infinity). A layout this reader
    does not know (recurrent memory, say) is refused too: the story is then read again, which is
    slow but right.
    """
    reader = _Reader(payload)
    magic, sequence = reader.unpack("<Ii")
    if magic != SEQ_STATE_MAGIC or sequence != EVERY_SEQUENCE:
        raise StateFileError("it does not start as a llama.cpp state of the whole KV")
    caches = 0
    record = np.array([len(sequences), *sequences], dtype="<i4")  # what follows each cell's position
    while reader.left:
        caches += 1
        streams, cells = reader.unpack("<II")
        if caches > _MAX_CACHES or streams != 1:
            raise StateFileError("its KV caches are not laid out as this llama.cpp writes them")
        if cells != n_tokens:
            raise StateFileError(f"a KV cache in it holds {cells:,} cells for {n_tokens:,} tokens")
        if not cells:
            continue
        records = np.frombuffer(reader.take(4 * (1 + len(record)) * cells), dtype="<i4").reshape(cells, -1)
        if not (records[:, 1:] == record).all():
            raise StateFileError("its cells do not all belong to the story")
        if not np.array_equal(np.sort(records[:, 0]), np.arange(n_tokens, dtype="<i4")):
            raise StateFileError("its cells' positions do not match its token list")
        transposed, layers = reader.unpack("<II")
        if transposed > 1 or not 0 < layers <= _MAX_LAYERS:
            raise StateFileError("its KV layers are not laid out as this llama.cpp writes them")
        for _layer in range(layers):  # keys: a row per cell
            kind, row = reader.unpack("<iQ")
            _check_values(reader.take(row * cells), kind, cache_type)
        for _layer in range(layers):  # values: a row per cell, or an element per cell and dimension
            if transposed:
                kind, element, count = reader.unpack("<iII")
                _check_values(reader.take(element * count * cells), kind, cache_type)
            else:
                kind, row = reader.unpack("<iQ")
                _check_values(reader.take(row * cells), kind, cache_type)
    if not caches:
        raise StateFileError("it holds no KV cache")


def _check_values(data: memoryview, ggml_type: int, cache_type: int) -> None:
    """Keys or values of the context's type only (llama.cpp would refuse others, after clearing the
    KV). NaN or infinity in a key or value spreads to every logit after it: refuse them, in float
    types and in q8_0's block scales."""
    if ggml_type != cache_type:
        found, wanted = (TYPE_NAMES.get(kind, f"type {kind}") for kind in (ggml_type, cache_type))
        raise OtherCacheType(f"it holds a {found} KV cache, and this game keeps {wanted} ([model] kv_cache)")
    if ggml_type == _Q8_0:
        if len(data) % _Q8_0_BLOCK:
            raise StateFileError("its keys or values have rows of a size q8_0 blocks do not make")
        scales = np.frombuffer(data, dtype=np.uint8).reshape(-1, _Q8_0_BLOCK)[:, :2].copy().view("<u2")
        if ((scales & 0x7C00) == 0x7C00).any():
            raise StateFileError("its keys or values hold NaN or infinity")
        return
    float_type = _FLOAT_TYPES.get(ggml_type)
    if float_type is None:
        return
    size, exponent = float_type
    if len(data) % size:
        raise StateFileError("its keys or values have rows of a size no float type has")
    bits = np.frombuffer(data, dtype=_UINT[size])
    if ((bits & exponent) == exponent).any():  # all exponent bits set: NaN or infinity
        raise StateFileError("its keys or values hold NaN or infinity")


class _Reader:
    """Reads a payload front to back; running past its end is a StateFileError, not garbage."""

    def __init__(self, payload: bytes) -> None:
        self.view = memoryview(payload)
        self.at = 0

    @property
    def left(self) -> int:
        return len(self.view) - self.at

    def take(self, size: int) -> memoryview:
        if size > self.left:
            raise StateFileError("it ends before its own lengths say it does")
        chunk = self.view[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, layout: str) -> tuple[int, ...]:
        return struct.unpack(layout, self.take(struct.calcsize(layout)))
