"""How much memory this process may still use, and whether a model will fit in it.

Checked before loading because on Linux a too-large allocation often "succeeds" (overcommit) and
the kernel kills the process later, which a player would see as a crash. The limit is the smallest
of: the system's available memory, the cgroup's remaining allowance, and the address-space rlimit.

A `MemoryPlan` is what a model at a context size needs, from its GGUF alone: the weights (llama.cpp
maps the whole file, so all of it counts against an address-space limit, while only the layers
not offloaded to a GPU take RAM), the KV cache (kv_size.py: of the offloaded layers in VRAM, of the
others in RAM) and the compute buffers. `simularity doctor` prints it; the engine refuses a plan that
does not fit before loading, with the same figures.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import psutil

from .config import KvCacheType
from .errors import OutOfMemoryError
from .gguf_file import GgufInfo
from .kv_size import CELL_PADDING, KvSize, kv_cache_size

MIB = 1 << 20
COMPUTE_OVERHEAD = 96 * MIB  # llama.cpp's compute buffers and bookkeeping, measured ~60 MiB on Gemma


VRAM_MARGIN = 0.9  # of a GPU's free memory, what a suggestion fills (drivers and display take some)


def available_memory() -> int:
    limits = memory_limits()
    return min(limits.ram, limits.address_space) if limits.address_space is not None else limits.ram


@dataclass(frozen=True)
class MemoryLimits:
    ram: int  # the system's available memory, or the cgroup's remaining allowance if less
    address_space: int | None  # what RLIMIT_AS leaves this process to map; None: no limit
    vram: int | None = None  # free GPU memory where a GPU build says; None: unknown or no GPU


def memory_limits(vram: int | None = None) -> MemoryLimits:
    ram: int = psutil.virtual_memory().available  # psutil is untyped
    cgroup = _cgroup_remaining()
    if cgroup is not None:
        ram = min(ram, cgroup)
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    space = None if soft == resource.RLIM_INFINITY else max(0, soft - psutil.Process().memory_info().vms)
    return MemoryLimits(ram, space, vram)


def _cgroup_remaining() -> int | None:
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class MemoryPlan:
    """What a model needs at a context size, and where."""

    n_ctx: int
    gpu_layers: int  # layers offloaded (0 on a build that cannot)
    weights: int  # the file, mapped whole
    weights_vram: int  # of which the offloaded layers
    kv: KvSize | None  # None: the GGUF lacks the numbers (the KV is then counted as nothing)
    kv_vram: int  # the offloaded layers' KV cache
    compute: int = COMPUTE_OVERHEAD

    @property
    def kv_bytes(self) -> int:
        return self.kv.total if self.kv else 0

    @property
    def ram(self) -> int:
        return self.weights - self.weights_vram + self.kv_bytes - self.kv_vram + self.compute

    @property
    def address_space(self) -> int:
        return self.weights + self.kv_bytes - self.kv_vram + self.compute

    @property
    def vram(self) -> int:
        return self.weights_vram + self.kv_vram + (self.compute if self.gpu_layers else 0)

    def problem(self, limits: MemoryLimits) -> str | None:
        """Why this does not fit in `limits` (None: it fits)."""
        if self.ram > limits.ram:
            return f"{self.ram // MIB:,} MiB of RAM and {limits.ram // MIB:,} MiB are free"
        if limits.address_space is not None and self.address_space > limits.address_space:
            return (
                f"{self.address_space // MIB:,} MiB of address space (the whole file is mapped) and the "
                f"address-space limit (ulimit -v) leaves {limits.address_space // MIB:,} MiB"
            )
        if self.gpu_layers and limits.vram is not None and self.vram > limits.vram:
            return f"{self.vram // MIB:,} MiB of GPU memory and {limits.vram // MIB:,} MiB are free"
        return None


def plan_memory(
    gguf: GgufInfo, n_ctx: int, *, gpu_layers: int = 0, offload: bool = False, cache_type: KvCacheType = "f16"
) -> MemoryPlan:
    """What the model in `gguf` needs with a context of `n_ctx` tokens and `gpu_layers` layers on a
    GPU (-1: all; counted only when the build can `offload`). The KV cache is full-size for
    sliding-window layers, as the engine makes it (native.py: swa_full), of type `cache_type`."""
    n_layer = len(gguf.layer_bytes)
    offloaded = 0 if not offload else n_layer if gpu_layers < 0 else min(gpu_layers, n_layer)
    kv = kv_cache_size(gguf.kv, n_ctx, cache_type=cache_type) if gguf.kv else None
    return MemoryPlan(
        n_ctx=n_ctx,
        gpu_layers=offloaded,
        weights=gguf.size,
        weights_vram=sum(gguf.layer_bytes[n_layer - offloaded :]) if offloaded else 0,
        kv=kv,
        kv_vram=kv.last_layers(offloaded) if kv else 0,
    )


def largest_n_ctx(
    gguf: GgufInfo, limits: MemoryLimits, *, gpu_layers: int = 0, offload: bool = False, cache_type: KvCacheType = "f16"
) -> int:
    """The largest context (a multiple of 256 tokens, at most the trained one) that fits; 0: none."""
    low, high = 0, (gguf.context_length or 1 << 20) // CELL_PADDING
    while low < high:  # the KV only grows with the context: bisect over multiples of 256
        middle = (low + high + 1) // 2
        plan = plan_memory(gguf, middle * CELL_PADDING, gpu_layers=gpu_layers, offload=offload, cache_type=cache_type)
        low, high = (middle, high) if plan.problem(limits) is None else (low, middle - 1)
    return low * CELL_PADDING


def suggest_gpu_layers(
    gguf: GgufInfo, n_ctx: int, *, offload: bool, vram: int | None, cache_type: KvCacheType = "f16"
) -> tuple[int, str]:
    """How many layers to offload at a context of `n_ctx` (-1: all), and why."""
    if not offload:
        return 0, "this llama.cpp build cannot offload to a GPU"
    if vram is None:
        return 0, "no GPU memory to put layers in is known"
    n_layer = len(gguf.layer_bytes)
    budget = int(vram * VRAM_MARGIN)
    fitting = 0
    for count in range(1, n_layer + 1):
        if plan_memory(gguf, n_ctx, gpu_layers=count, offload=True, cache_type=cache_type).vram > budget:
            break
        fitting = count
    if fitting == n_layer:
        return -1, f"all {n_layer} layers fit in {budget // MIB:,} MiB of GPU memory"
    return fitting, f"{fitting} of {n_layer} layers fit in {budget // MIB:,} MiB of GPU memory"


def describe_plan(plan: MemoryPlan) -> str:
    """The figures, as the doctor and a refusal both say them."""
    kv = plan.kv
    if kv:
        layers = kv.layers + kv.swa_layers
        kv_text = f"KV cache {plan.kv_bytes / MIB:,.1f} MiB ({kv.cache_type}, {kv.cells:,} cells × {layers} layers)"
    else:
        kv_text = "KV cache unknown (the GGUF lacks the numbers)"
    return f"weights {plan.weights // MIB:,} MiB, {kv_text}, compute buffers ~{plan.compute // MIB} MiB"


def check_fits(model_path: Path, plan: MemoryPlan, limits: MemoryLimits, *, largest: int | None = None) -> None:
    """Raise `OutOfMemoryError`, with the figures, when `plan` does not fit in `limits`.

    `largest`: the largest context that would fit, for the hint."""
    problem = plan.problem(limits)
    if problem is None:
        return
    lower = f"Lower n_ctx to {largest:,} or less" if largest else "Lower n_ctx"
    raise OutOfMemoryError(
        f"Not enough memory for {model_path.name} with a context of {plan.n_ctx:,} tokens: it needs {problem} "
        f"({describe_plan(plan)}).",
        hint=f"{lower} (--n-ctx or [model] n_ctx in settings.toml), close other programs, or choose a smaller "
        "model; `simularity doctor` shows what fits.",
        path=model_path,
    )
