"""The KV cache llama.cpp allocates for a context, from the GGUF's numbers alone (no loading).

Per layer and cell it holds one K row (`head_count_kv × key_length` elements) and one V row
(`head_count_kv × value_length`), in the cache type (f16 unless told otherwise). llama.cpp rounds
the context up to a multiple of 256 cells. Models with sliding-window attention (Gemma 2 and 3,
Cohere 2, gpt-oss…) keep two caches: the full-attention layers get every cell; the sliding-window
layers get `min(n_ctx, pad256(window + n_ubatch))` cells — unless the cache is "full-size"
(`swa_full`), which this engine asks for, because only a full cache can be shifted and rolled back
(ENGINE-NOTES.md). Which layers slide is the architecture's pattern (Gemma 3: five of every six),
or the GGUF's `attention.sliding_window_pattern` where it has one. Checked against the sizes
llama.cpp logs at load ("llama_kv_cache: size = …", tests/test_doctor.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from .config import KvCacheType

CELL_PADDING = 256  # llama.cpp pads the context (and the SWA cache) to a multiple of this
# In every `pattern` layers, the last attends to everything and the others to a window
# (llama.cpp's `set_swa_pattern`), for the architectures whose GGUF does not say it.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "exaone4": 4}
CACHE_TYPES: dict[KvCacheType, GGMLQuantizationType] = {
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
}


@dataclass(frozen=True)
class KvShape:
    """What the cache's size follows from, per layer."""

    kv_heads: tuple[int, ...]  # K/V heads of each layer (0: a layer with no attention cache)
    key_length: int
    value_length: int
    sliding_window: int | None
    swa_layers: tuple[bool, ...]  # which layers attend to the window only

    @property
    def n_layer(self) -> int:
        return len(self.kv_heads)


@dataclass(frozen=True)
class KvSize:
    """The cache at one context size: cells and bytes of the full-attention layers and of the
    sliding-window ones, and of each layer (to split between the CPU and a GPU)."""

    cells: int
    swa_cells: int
    layers: int
    swa_layers: int
    per_layer: tuple[int, ...]  # bytes of each layer's K and V
    cache_type: KvCacheType
    aside: int = 0  # of the cells, those beyond the story's context (aside_cells)

    @property
    def total(self) -> int:
        return sum(self.per_layer)

    def last_layers(self, count: int) -> int:
        """Bytes of the last `count` layers' cache (the ones llama.cpp offloads first)."""
        return sum(self.per_layer[max(0, len(self.per_layer) - count) :]) if count > 0 else 0


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def kv_shape(metadata: Mapping[str, Any], arch: str) -> KvShape | None:
    """The cache's shape from GGUF metadata; None when the metadata lacks the numbers."""
    layers = _int(metadata.get(f"{arch}.block_count"))
    heads = metadata.get(f"{arch}.attention.head_count")
    kv_heads = metadata.get(f"{arch}.attention.head_count_kv", heads)
    embedding = _int(metadata.get(f"{arch}.embedding_length"))
    if not layers or not embedding:
        return None
    per_layer_kv = _per_layer(kv_heads, layers)
    per_layer_heads = _per_layer(heads, layers)
    if per_layer_kv is None or per_layer_heads is None or not max(per_layer_heads, default=0):
        return None
    head_dim = embedding // max(per_layer_heads)
    key_length = _int(metadata.get(f"{arch}.attention.key_length")) or head_dim
    value_length = _int(metadata.get(f"{arch}.attention.value_length")) or head_dim
    window = _int(metadata.get(f"{arch}.attention.sliding_window")) or None
    return KvShape(per_layer_kv, key_length, value_length, window, _swa_layers(metadata, arch, layers, window))


def _per_layer(value: Any, layers: int) -> tuple[int, ...] | None:
    """A per-layer number: one for all layers, or a list of one per layer (OpenELM's KV heads)."""
    if isinstance(value, list) and len(value) == layers and all(_int(item) is not None for item in value):
        return tuple(int(item) for item in value)
    number = _int(value)
    return (number,) * layers if number is not None else None


def _swa_layers(metadata: Mapping[str, Any], arch: str, layers: int, window: int | None) -> tuple[bool, ...]:
    if not window:
        return (False,) * layers
    pattern = metadata.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == layers:
        return tuple(bool(item) for item in pattern)
    every = _int(pattern) or SWA_PATTERNS.get(arch)
    if not every:  # unknown: count every layer as full attention (never less than llama.cpp needs)
        return (False,) * layers
    return tuple(layer % every < every - 1 for layer in range(layers))


def aside_cells(n_ctx: int) -> int:
    """The cells the engine asks for beyond a story context of `n_ctx` tokens: room for a
    generation aside (a summary written while the story's KV holds the turn to come, native.py
    `fork_aside`) when the story's window is full. A summary's request, its events and its answer
    fit in a few hundred tokens, whatever the context; a quarter of a small context leaves it room
    for a few of the lines it stands for."""
    return min(max(n_ctx // 4, 256), 512)


def padded(cells: int) -> int:
    return -(-cells // CELL_PADDING) * CELL_PADDING


def kv_cache_size(
    shape: KvShape,
    n_ctx: int,
    *,
    swa_full: bool = True,
    cache_type: KvCacheType = "f16",
    n_ubatch: int = 512,
    aside: bool = True,
) -> KvSize:
    """The cache llama.cpp makes for a story context of `n_ctx` tokens, as the engine asks for it
    (with `aside_cells` more: `aside`; a model server's slot has none)."""
    block, block_bytes = GGML_QUANT_SIZES[CACHE_TYPES[cache_type]]
    beside = aside_cells(n_ctx) if aside else 0
    cells = padded(n_ctx + beside)
    swa_cells = cells if swa_full or not shape.sliding_window else min(cells, padded(shape.sliding_window + n_ubatch))
    per_layer = []
    for heads, sliding in zip(shape.kv_heads, shape.swa_layers, strict=True):
        row = (heads * shape.key_length // block + heads * shape.value_length // block) * block_bytes
        per_layer.append(row * (swa_cells if sliding else cells))
    n_swa = sum(1 for heads, sliding in zip(shape.kv_heads, shape.swa_layers, strict=True) if sliding and heads)
    n_full = sum(1 for heads in shape.kv_heads if heads) - n_swa
    return KvSize(cells, swa_cells, n_full, n_swa, tuple(per_layer), cache_type, beside)


def bytes_per_token(shape: KvShape) -> int:
    """f16 K and V of every layer for one token, with a full-size cache (what this engine keeps)."""
    return sum(heads * (shape.key_length + shape.value_length) * 2 for heads in shape.kv_heads)
