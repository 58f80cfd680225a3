"""What this llama.cpp build can do: its version, CPU features, whether it offloads to a GPU, and
the GPUs ggml sees with their free memory (ggml's backend device registry, through ctypes: the
functions are exported by libggml, which llama-cpp-python ships, but it does not bind them).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C

from .config import KvCacheType
from .gguf_file import inspect_gguf
from .memory import suggest_gpu_layers
from .native import init_backend

log = logging.getLogger("simularity.engine")
# enum ggml_backend_dev_type: CPU, GPU, IGPU (integrated, shares system memory), ACCEL
_DEVICE_KINDS = {0: "CPU", 1: "GPU", 2: "integrated GPU", 3: "accelerator"}


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str  # "CPU", "GPU", "integrated GPU", "accelerator"
    free: int | None  # bytes; None when the backend does not say
    total: int | None


@dataclass(frozen=True)
class LlamaBuild:
    version: str  # llama-cpp-python's
    system_info: str  # llama_print_system_info(): the CPU features and backends compiled in
    gpu_offload: bool  # llama_supports_gpu_offload()
    devices: tuple[Device, ...]  # None known when the registry is not reachable

    @property
    def gpus(self) -> tuple[Device, ...]:
        return tuple(device for device in self.devices if device.kind in ("GPU", "integrated GPU"))

    def vram_free(self) -> int | None:
        """Free memory over the discrete GPUs (None: none, or none that says)."""
        known = [device.free for device in self.gpus if device.kind == "GPU" and device.free is not None]
        return sum(known) if known else None


def llama_build() -> LlamaBuild:
    init_backend()
    return LlamaBuild(
        version=C.__version__,
        system_info=C.llama_print_system_info().decode("utf-8", errors="replace").strip(),
        gpu_offload=bool(C.llama_supports_gpu_offload()),
        devices=_devices(),
    )


def _devices() -> tuple[Device, ...]:
    try:
        from llama_cpp._ggml import libggml  # the shared library llama-cpp-python loads for its own use

        lib = libggml
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        for function in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, function).argtypes = [ctypes.c_void_p]
            getattr(lib, function).restype = ctypes.c_char_p
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_size_t)] * 2
        lib.ggml_backend_dev_memory.restype = None
    except (ImportError, AttributeError, OSError) as error:  # another build or binding: the devices are unknown
        log.info("ggml's device registry is not reachable: %s", error)
        return ()
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        devices.append(
            Device(
                name=(lib.ggml_backend_dev_name(device) or b"?").decode("utf-8", errors="replace"),
                description=(lib.ggml_backend_dev_description(device) or b"").decode("utf-8", errors="replace"),
                kind=_DEVICE_KINDS.get(lib.ggml_backend_dev_type(device), "unknown"),
                free=free.value or None,
                total=total.value or None,
            )
        )
    return tuple(devices)


def auto_gpu_layers(path: Path, n_ctx: int, cache_type: KvCacheType = "f16") -> tuple[int, str]:
    """`gpu_layers = "auto"`: the layers of the model at `path` that fit the GPU at `n_ctx`, and why."""
    build = llama_build()
    return suggest_gpu_layers(
        inspect_gguf(path), n_ctx, offload=build.gpu_offload, vram=build.vram_free(), cache_type=cache_type
    )
