"""A quick look inside a GGUF file before llama.cpp loads it.

llama.cpp reports a bad file as a NULL model and a line on stderr; players deserve better. This
reads the header, the metadata and the tensor table (not the weights) to tell a missing file, a
file that is not GGUF and a truncated download apart, and to learn the training context size and
the KV cache cost per token. gguf-py's GGUFReader does this too but takes ~10 s on a 262k-token
vocabulary; this scan skips arrays in bulk and takes milliseconds.
"""

from __future__ import annotations

import errno
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import ModelFileError, OutOfMemoryError
from .kv_size import KvShape, bytes_per_token, kv_shape

GGUF_MAGIC = b"GGUF"
_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}
_DEFAULT_ALIGNMENT = 32
_SMALL_ARRAY = 4096  # numeric arrays up to this long are read (per-layer numbers); longer ones skipped


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    size: int
    architecture: str
    name: str
    context_length: int | None
    kv_bytes_per_token: int | None  # f16 K and V over every layer; None when the metadata lacks it
    kv: KvShape | None = None  # the KV cache's shape (kv_size.py); None when the metadata lacks it
    n_params: int = 0  # weights, counted from the tensor table
    layer_bytes: tuple[int, ...] = ()  # bytes of each block's weights (blk.N.*), to offload
    size_label: str = ""  # general.size_label, e.g. "270M"
    chat_template: str | None = None  # tokenizer.chat_template: Jinja from the file's maker (chat_template.py)


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise _Truncated
        chunk = self.data[self.offset : end]
        self.offset = end
        return bytes(chunk)

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8", errors="replace")

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise _Truncated
        self.offset += size

    def value(self, kind: GGUFValueType) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item_kind = GGUFValueType(self.scalar("<I"))
            count = self.scalar("<Q")
            if item_kind in _SCALARS:  # a vocabulary's scores are skipped in one step; per-layer numbers kept
                fmt = _SCALARS[item_kind]
                if count > _SMALL_ARRAY:
                    self.skip(count * struct.calcsize(fmt))
                    return None
                return list(struct.unpack(f"<{count}{fmt[1:]}", self.take(count * struct.calcsize(fmt))))
            if item_kind == GGUFValueType.STRING:
                for _ in range(count):
                    self.skip(self.scalar("<Q"))
                return None
            return [self.value(item_kind) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {kind}")


def inspect_gguf(path: Path) -> GgufInfo:
    """Check that `path` is a complete GGUF file and read what the engine needs from it."""
    if not path.exists():
        raise ModelFileError(
            f"Model file not found: {path}",
            hint="Check the path, or leave the model setting empty to play on the embedded model.",
            path=path,
        )
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a directory, not a model file", hint="Give the path of a .gguf file.", path=path
        )
    if not path.is_file():  # a FIFO would block the open for ever, a device would read for ever
        raise ModelFileError(f"{path} is not a regular file", hint="Give the path of a .gguf file.", path=path)
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size < 24:
                return _bad(path, size)
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(path, size, data)
    except PermissionError:
        raise ModelFileError(
            f"Cannot read the model file {path}: permission denied", hint="Check the file's permissions.", path=path
        ) from None
    except OSError as error:
        if error.errno == errno.ENOMEM:
            raise OutOfMemoryError(
                f"Not enough memory to open {path.name}: even mapping the file into memory failed.",
                hint="Close other programs, or choose a smaller model.",
                path=path,
            ) from None
        raise ModelFileError(f"Cannot read the model file {path}: {error.strerror}", path=path) from None


def _bad(path: Path, size: int) -> NoReturn:
    raise ModelFileError(
        f"{path} is not a GGUF model file ({size} bytes, no GGUF header)",
        hint="Simularity plays llama.cpp GGUF models: convert the model or download its .gguf version.",
        path=path,
    )


def _parse(path: Path, size: int, data: mmap.mmap) -> GgufInfo:
    if data[:4] != GGUF_MAGIC:
        _bad(path, size)
    reader = _Reader(data)
    try:
        reader.skip(4)
        version = reader.scalar("<I")
        if version not in (2, 3):
            raise ModelFileError(
                f"{path} is GGUF version {version}, which this llama.cpp does not read",
                hint="Re-convert the model with a current llama.cpp, or download a recent GGUF.",
                path=path,
            )
        n_tensors = reader.scalar("<Q")
        n_kv = reader.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = reader.string()
            metadata[key] = reader.value(GGUFValueType(reader.scalar("<I")))
        tensors = _tensor_table(reader, n_tensors)
    except _Truncated:
        _truncated(path, size)
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ModelFileError(
            f"{path} has a damaged GGUF header",
            hint="Download the model again; if it persists the file is not a valid GGUF.",
            path=path,
        ) from None
    alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
    data_start = -(-reader.offset // alignment) * alignment
    if data_start + tensors.data_end > size:
        _truncated(path, size, expected=data_start + tensors.data_end)
    architecture = str(metadata.get("general.architecture", "unknown"))
    shape = kv_shape(metadata, architecture)
    layers = _int(metadata, f"{architecture}.block_count") or 0
    return GgufInfo(
        path=path,
        size=size,
        architecture=architecture,
        name=str(metadata.get("general.name") or path.stem),
        context_length=_int(metadata, f"{architecture}.context_length"),
        kv_bytes_per_token=bytes_per_token(shape) if shape else None,
        kv=shape,
        n_params=tensors.n_params,
        layer_bytes=tuple(tensors.layer_bytes.get(layer, 0) for layer in range(layers)),
        size_label=str(metadata.get("general.size_label") or ""),
        chat_template=template if isinstance(template := metadata.get("tokenizer.chat_template"), str) else None,
    )


@dataclass
class _Tensors:
    data_end: int = 0  # where the last tensor's data ends, from the start of the data
    n_params: int = 0
    layer_bytes: dict[int, int] = field(default_factory=dict)  # block number: bytes of its tensors


def _tensor_table(reader: _Reader, n_tensors: int) -> _Tensors:
    """Read the tensor table: where the data ends, the weights' count, each block's bytes."""
    table = _Tensors()
    for _ in range(n_tensors):
        name = reader.string()
        n_dims = reader.scalar("<I")
        elements = 1
        for _ in range(n_dims):
            elements *= reader.scalar("<Q")
        kind = GGMLQuantizationType(reader.scalar("<I"))
        offset = reader.scalar("<Q")
        block, block_bytes = GGML_QUANT_SIZES[kind]
        nbytes = elements // block * block_bytes
        table.data_end = max(table.data_end, offset + nbytes)
        table.n_params += elements
        parts = name.split(".")
        if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit():
            table.layer_bytes[int(parts[1])] = table.layer_bytes.get(int(parts[1]), 0) + nbytes
    return table


def _truncated(path: Path, size: int, expected: int | None = None) -> NoReturn:
    detail = f"{size:,} of {expected:,} bytes" if expected else f"{size:,} bytes, its header cut short"
    raise ModelFileError(
        f"{path} is an incomplete GGUF file ({detail}): the download or copy was cut short",
        hint="Download or copy the model again, completely.",
        path=path,
    )


def _int(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    return int(value) if isinstance(value, (int, float)) else None
