"""`simularity doctor`: what this machine and this llama.cpp build can do with a model, before
loading it: the build and its GPU offload, RAM and GPU memory, the model's shape, the KV cache at
the chosen context (engine/kv_size.py), whether it all fits (engine/memory.py: the same arithmetic
that refuses a context that does not fit when a game loads), a suggested `gpu_layers` and n_ctx,
and how to get a GPU build of llama-cpp-python. Nothing is loaded: the GGUF's header is read.

Exit status 0 when the settings fit, 1 when they do not (the report says why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .untrusted_text import printable

if TYPE_CHECKING:  # the command line imports this module for its parser: `simularity --help` stays light
    from .settings import Settings

MIB = 1 << 20
GIB = 1 << 30
PIP = "pip install --force-reinstall --no-cache-dir llama-cpp-python"
GPU_BUILDS = (("CUDA (NVIDIA)", "-DGGML_CUDA=on"), ("Metal (Apple)", "-DGGML_METAL=on"), ("Vulkan", "-DGGML_VULKAN=on"))


def add_doctor_command(commands: Any, model_options: argparse.ArgumentParser) -> None:
    """The `doctor` command's parser, under `commands` (the CLI's subparsers)."""
    commands.add_parser(
        "doctor",
        parents=[model_options],
        help="what this machine and llama.cpp build can do with a model: memory, KV cache, GPU layers",
    )


def doctor_command(args: argparse.Namespace, settings: Settings) -> int:
    from .model_choice import model_path

    path = model_path(settings, getattr(args, "model", None))
    lines, fits = doctor_report(settings, path)
    print("\n".join(printable(line) for line in lines))
    return 0 if fits else 1


def doctor_report(settings: Settings, path: Path) -> tuple[list[str], bool]:
    """The report's lines, and whether the settings fit."""
    from .engine.amx import plain_layout
    from .engine.chat_template import template_summary
    from .engine.gguf_file import inspect_gguf
    from .engine.kv_size import kv_cache_size
    from .engine.llama_build import llama_build
    from .engine.memory import largest_n_ctx, memory_limits, plan_memory, suggest_gpu_layers
    from .models.fit import machine_memory

    build = llama_build()
    gguf = inspect_gguf(path)
    n_ctx = settings.model.n_ctx
    vram = build.vram_free()
    lines = ["llama.cpp", f"  llama-cpp-python {build.version}", f"  system: {build.system_info}"]
    if plain_layout():
        lines.append(
            "  weights: llama.cpp's plain layout (this CPU has AMX, whose layout crashes some machines; "
            "SIMULARITY_AMX=1 keeps it where it works)"
        )
    gpus = ", ".join(f"{gpu.name} ({gpu.description})" for gpu in build.gpus)
    if build.gpu_offload:
        lines.append(f"  GPU offload: yes ({gpus or 'no GPU device found'})")
    else:
        lines.append("  GPU offload: no (a CPU-only build: every layer runs on the CPU)")

    memory = machine_memory()
    limits = memory_limits(vram)
    lines += ["Memory", f"  RAM: {limits.ram / GIB:.1f} GiB available of {memory.total / GIB:.1f} GiB"]
    if limits.address_space is not None:
        lines.append(f"  address-space limit (ulimit -v): {limits.address_space // MIB:,} MiB left")
    for gpu in build.gpus:
        free = f"{gpu.free / GIB:.1f} GiB free of {gpu.total / GIB:.1f} GiB" if gpu.free and gpu.total else "unknown"
        lines.append(f"  VRAM {gpu.name}: {free}")
    if not build.gpus:
        lines.append("  VRAM: none (no GPU backend in this build)" if not build.gpu_offload else "  VRAM: unknown")

    lines += [
        f"Model: {path}",
        f"  architecture: {gguf.architecture} ({gguf.name})",
        f"  file size: {gguf.size / MIB:,.1f} MiB",
        f"  parameters: {gguf.n_params / 1e6:,.1f} M" + (f" ({gguf.size_label})" if gguf.size_label else ""),
        f"  trained context: {gguf.context_length:,} tokens" if gguf.context_length else "  trained context: unknown",
        f"  chat template: {template_summary(gguf.chat_template)}; playing with template = {settings.model.template}",
    ]
    shape = gguf.kv
    if shape:
        sliding = sum(shape.swa_layers)
        window = f", {sliding} of them sliding-window ({shape.sliding_window:,} tokens)" if sliding else ""
        lines.append(f"  layers: {shape.n_layer}{window}")
        lines.append(f"  KV cache per token: {(gguf.kv_bytes_per_token or 0) / 1024:,.1f} KiB (f16)")
    else:
        lines.append(f"  layers: {len(gguf.layer_bytes) or 'unknown'}; KV cache size unknown (the metadata lacks it)")

    cache_type = settings.model.kv_cache
    gpu_layers, why = suggest_gpu_layers(gguf, n_ctx, offload=build.gpu_offload, vram=vram, cache_type=cache_type)
    wanted = settings.model.gpu_layers
    chosen = gpu_layers if wanted == "auto" else wanted
    plan = plan_memory(gguf, n_ctx, gpu_layers=chosen, offload=build.gpu_offload, cache_type=cache_type)
    problem = plan.problem(limits)
    lines.append(
        f"At n_ctx = {n_ctx:,}, gpu_layers = {wanted}" + (f" → {gpu_layers} ({why})" if wanted == "auto" else "")
    )
    if plan.kv and shape:
        kv = plan.kv
        lines.append(
            f"  KV cache: {kv.total / MIB:,.1f} MiB ({kv.cache_type}, {kv.cells:,} cells × {shape.n_layer} layers; "
            f"{kv.aside:,} of the cells for a summary written beside the story)"
        )
        if kv.swa_layers:
            lean = kv_cache_size(shape, n_ctx, swa_full=False, cache_type=cache_type)
            lines.append(
                f"    sliding-window layers kept full-size, so that the context can shift "
                f"({lean.total / MIB:,.1f} MiB with {lean.swa_cells:,} cells for them)"
            )
    lines.append(
        f"  needs: RAM {plan.ram / MIB:,.0f} MiB (weights {(plan.weights - plan.weights_vram) / MIB:,.0f}, "
        f"KV {(plan.kv_bytes - plan.kv_vram) / MIB:,.1f}, compute ~{plan.compute // MIB}), "
        f"address space {plan.address_space / MIB:,.0f} MiB"
        + (f", VRAM {plan.vram / MIB:,.0f} MiB" if plan.gpu_layers else "")
    )
    too_long = gguf.context_length is not None and n_ctx > gguf.context_length
    fits = problem is None and not too_long
    if too_long:
        lines.append(f"  fits: NO: the model was trained for {gguf.context_length:,} tokens")
    else:
        lines.append("  fits: yes" if problem is None else f"  fits: NO: it needs {problem}")

    largest = largest_n_ctx(gguf, limits, gpu_layers=gpu_layers, offload=build.gpu_offload)
    suggested_ctx = n_ctx if fits else largest
    lines += [
        "Suggested",
        f"  gpu_layers = {gpu_layers} ({why})",
        f"  n_ctx = {suggested_ctx:,} (the largest that fits here: {largest:,} tokens)",
    ]
    if not build.gpu_offload:
        lines.append("A GPU build of llama-cpp-python (in the environment Simularity runs from):")
        for name, flag in GPU_BUILDS:
            lines.append(f'  {name + ":":15} CMAKE_ARGS="{flag}" {PIP}')
        lines.append(f"  (this Python: {sys.executable} -m pip …)")
    return lines, fits
