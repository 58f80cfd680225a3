"""How much memory this process may still use, and whether a model will fit in it.

Checked before loading because on Linux a too-large allocation often "succeeds" (overcommit) and
the kernel kills the process later, which a player would see as a crash. The limit is the smallest
of: the system's available memory, the cgroup's remaining allowance, and the address-space rlimit.
"""

from __future__ import annotations

import resource
from pathlib import Path

import psutil

from .errors import OutOfMemoryError

MIB = 1 << 20
COMPUTE_OVERHEAD = 96 * MIB  # llama.cpp's compute buffers and bookkeeping, measured ~60 MiB on Gemma


def available_memory() -> int:
    limits: list[int] = [psutil.virtual_memory().available]  # psutil is untyped
    cgroup = _cgroup_remaining()
    if cgroup is not None:
        limits.append(cgroup)
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - psutil.Process().memory_info().vms))
    return min(limits)


def _cgroup_remaining() -> int | None:
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def check_fits(model_path: Path, *, weights_bytes: int, kv_bytes: int, n_ctx: int) -> None:
    """Raise `OutOfMemoryError` when the weights plus the KV cache exceed what is available."""
    needed = weights_bytes + kv_bytes + COMPUTE_OVERHEAD
    available = available_memory()
    if needed <= available:
        return
    raise OutOfMemoryError(
        f"Not enough memory for {model_path.name}: it needs about {needed // MIB:,} MiB "
        f"(weights {weights_bytes // MIB:,} MiB, context of {n_ctx:,} tokens {kv_bytes // MIB:,} MiB) "
        f"and {available // MIB:,} MiB are free.",
        hint="Lower n_ctx (--n-ctx or [model] n_ctx in settings.toml), close other programs, "
        "or choose a smaller model.",
        path=model_path,
    )
