"""Intel AMX: where the CPU has it, ggml lays a model's weights out for AMX tiles, and on some
Sapphire Rapids machines the first batch of a prompt then crashes the process: a segmentation
fault in `ggml_backend_amx_mul_mat` (ggml-org/llama.cpp#20824, open; the same build and model run
on other machines). Seen on a 2-vCPU VM with llama-cpp-python 0.3.36 built from source: Gemma 3
270M died reading its first 512 tokens, in the engine, in llama-cpp-python's `Llama` and in
llama-server alike. A crash loses the game, so on such a CPU the weights keep llama.cpp's plain
layout: `use_extra_bufts` off in-process, `--no-repack` for llama-server. Other CPUs are untouched.
It costs those CPUs the repacked layouts' speed: where AMX works, `SIMULARITY_AMX=1` keeps it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

KEEP_AMX_VARIABLE = "SIMULARITY_AMX"  # "1": keep ggml's AMX layout on a machine where it works
_CPUINFO = Path("/proc/cpuinfo")


def plain_layout() -> bool:
    """Whether models load in llama.cpp's plain layout here: the CPU has AMX, and the environment
    does not ask for AMX's layout."""
    return cpu_has_amx() and os.environ.get(KEEP_AMX_VARIABLE) != "1"


@functools.cache
def cpu_has_amx(cpuinfo: Path = _CPUINFO) -> bool:
    """Whether this CPU offers AMX (Linux says so in /proc/cpuinfo's flags; elsewhere: no)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return "amx_int8" in value.split()
    return False


def plain_layout_in_llama_cpp_python() -> None:
    """Where models load plain (`plain_layout`): so do those llama-cpp-python's own `Llama` loads
    in this process from now on (the benchmarks' baselines, llama-cpp-python's server in the
    tests). `Llama` takes no such setting: its default model parameters are wrapped instead."""
    if not plain_layout():
        return
    import llama_cpp.llama_cpp as bindings

    defaults = bindings.llama_model_default_params
    if getattr(defaults, "plain_layout", False):
        return

    def plain_defaults() -> object:
        params = defaults()
        params.use_extra_bufts = False
        return params

    plain_defaults.plain_layout = True  # type: ignore[attr-defined]
    bindings.llama_model_default_params = plain_defaults
