"""`simularity doctor` and the memory check it shares with loading: the KV cache arithmetic against
llama.cpp's own figure, the report on the embedded model, a context that cannot fit an address-space
limit refused before loading, and `--gpu-layers auto`."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simularity_tui.engine.amx import plain_layout
from simularity_tui.engine.gguf_file import inspect_gguf
from simularity_tui.engine.kv_size import kv_cache_size
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.settings import ModelSettings, Settings
from tests.conftest import TEST_THREADS

MIB = 1 << 20
KV_LINE = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers")
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


def simularity(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def _llama_kv_mib(caplog: pytest.LogCaptureFixture, make_context: object) -> float:
    """The KV size llama.cpp logs when it makes a context: the sum of its caches (a sliding-window
    model has two: full-attention layers and sliding-window layers)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simularity.llama"):
        make_context()  # type: ignore[operator]
    sizes = [float(match[1]) for record in caplog.records if (match := KV_LINE.search(record.getMessage()))]
    assert sizes, "llama.cpp logged no KV cache size"
    return sum(sizes)


@pytest.mark.parametrize("n_ctx", [512, 2048, 8192])
def test_kv_size_matches_llama_cpp(model_path: Path, caplog: pytest.LogCaptureFixture, n_ctx: int) -> None:
    import llama_cpp as C

    from simularity_tui.engine.native import NativeContext, NativeModel

    gguf = inspect_gguf(model_path)
    assert gguf.kv is not None
    model = NativeModel(str(model_path), 0)
    try:

        def engine_context() -> None:  # as the engine makes it: a full-size cache for sliding-window layers
            NativeContext(model, n_ctx=n_ctx, n_batch=512, n_threads=2).close()

        def lean_context() -> None:  # llama.cpp's own default: sliding-window layers get the window only
            params = C.llama_context_default_params()
            params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, 512, 512, 1
            params.swa_full = False
            ctx = C.llama_init_from_model(model.ptr, params)
            assert ctx
            C.llama_free(ctx)

        theirs = _llama_kv_mib(caplog, engine_context)
        ours = kv_cache_size(gguf.kv, n_ctx).total / MIB
        assert ours == pytest.approx(theirs, rel=0.05), (n_ctx, ours, theirs)
        theirs_q8 = _llama_kv_mib(
            caplog, lambda: NativeContext(model, n_ctx=n_ctx, n_batch=512, n_threads=2, cache_type="q8_0").close()
        )
        ours_q8 = kv_cache_size(gguf.kv, n_ctx, cache_type="q8_0").total / MIB
        assert ours_q8 == pytest.approx(theirs_q8, rel=0.05) and ours_q8 < 0.55 * ours, (n_ctx, ours_q8, theirs_q8)
        theirs_lean = _llama_kv_mib(caplog, lean_context)
        ours_lean = kv_cache_size(gguf.kv, n_ctx, swa_full=False, n_ubatch=512, aside=False).total / MIB
        assert ours_lean == pytest.approx(theirs_lean, rel=0.05), (n_ctx, ours_lean, theirs_lean)
    finally:
        model.close()


def test_doctor_reports_the_embedded_model(model_path: Path) -> None:
    import llama_cpp

    run = simularity("doctor", "--model", str(model_path), "--n-ctx", "2048")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for line in (
        f"llama-cpp-python {llama_cpp.__version__}",
        "system: CPU :",
        *(["weights: llama.cpp's plain layout (this CPU has AMX"] if plain_layout() else []),
        "RAM: ",
        "architecture: gemma3 (Gemma 3 270m)",
        "parameters: 268.1 M (270M)",
        "trained context: 32,768 tokens",
        'chat template: none in the file (a base model: "auto" plays it raw); playing with template = auto',
        "layers: 18, 15 of them sliding-window (512 tokens)",
        "At n_ctx = 2,048, gpu_layers = 0",
        "KV cache: 45.0 MiB (f16, 2,560 cells × 18 layers; 512 of the cells for a summary written beside the story)",
        "fits: yes",
        "n_ctx = 2,048",
    ):
        assert line in out, (line, out)
    quantized = simularity("doctor", "--model", str(model_path), "--n-ctx", "2048", "--kv-cache", "q8_0")
    assert "KV cache: 23.9 MiB (q8_0, 2,560 cells × 18 layers;" in quantized.stdout, quantized.stdout
    if not llama_cpp.llama_supports_gpu_offload():
        assert "GPU offload: no" in out
        assert "VRAM: none" in out
        for flag in ("-DGGML_CUDA=on", "-DGGML_METAL=on", "-DGGML_VULKAN=on"):
            assert f'CMAKE_ARGS="{flag}" pip install --force-reinstall --no-cache-dir llama-cpp-python' in out


def test_too_big_a_context_for_an_address_space_limit_is_refused_before_loading(model_path: Path) -> None:
    """Under RLIMIT_AS, a context whose KV cache (with the mapped file) cannot fit is refused with the
    figures: exit 2, no traceback, and llama.cpp never asked to load (its log stays silent)."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        import psutil
        from simularity_tui import cli
        from simularity_tui.engine import native
        import simularity_tui.model_session, simularity_tui.story.play, simularity_tui.story.script  # what `run` loads
        loads = []
        native.NativeModel.__init__ = lambda *a, **k: loads.append(a) or sys.exit(99)
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + 540 * 2**20, resource.RLIM_INFINITY))
        sys.exit(cli.main(["--model", {str(model_path)!r}, "run", {str(LIGHTHOUSE)!r}, "--script", "-",
                           "--n-ctx", "32768", "--threads", "{TEST_THREADS}"]))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], input="", capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    assert "Not enough memory for gemma-3-270m-q4_k_m.gguf with a context of 32,768 tokens" in run.stderr
    assert "address-space limit (ulimit -v)" in run.stderr
    assert "KV cache 585.0 MiB" in run.stderr  # 32,768 cells and 512 for a summary aside
    assert re.search(r"Lower n_ctx to [\d,]+ or less", run.stderr), run.stderr


def test_gpu_layers_auto_on_a_cpu_build_is_0(model_path: Path) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("a GPU build: auto picks what fits the GPU")
    settings = Settings(model=ModelSettings(gpu_layers="auto", n_ctx=2048))
    assert settings.model_config_for(model_path).n_gpu_layers == 0
    run = simularity("doctor", "--model", str(model_path), "--n-ctx", "2048", "--gpu-layers", "auto")
    assert run.returncode == 0, run.stderr
    assert "gpu_layers = auto → 0 (this llama.cpp build cannot offload to a GPU)" in run.stdout


def test_gpu_layers_setting_takes_auto_or_a_number(tmp_path: Path) -> None:
    from simularity_tui.errors import UserFacingError
    from simularity_tui.settings import load_settings

    path = tmp_path / "settings.toml"
    path.write_text('[model]\ngpu_layers = "auto"\n')
    assert load_settings(path).model.gpu_layers == "auto"
    path.write_text('[model]\ngpu_layers = "many"\n')
    with pytest.raises(UserFacingError, match=":2:"):
        load_settings(path)
    assert ModelSettings.model_validate({"gpu_layers": "12"}).gpu_layers == 12  # as the settings screen sends it
    run = simularity("doctor", "--gpu-layers", "many")
    assert run.returncode == 2 and "'many' is not a number of layers or 'auto'" in run.stderr


def test_gpu_layers_suggested_from_the_free_gpu_memory(model_path: Path) -> None:
    """The GPU arithmetic without a GPU: the last layers' weights and KV cache, and the compute buffers."""
    from simularity_tui.engine.memory import COMPUTE_OVERHEAD, MemoryLimits, plan_memory, suggest_gpu_layers

    gguf = inspect_gguf(model_path)
    assert suggest_gpu_layers(gguf, 2048, offload=True, vram=1 << 40)[0] == -1
    assert suggest_gpu_layers(gguf, 2048, offload=True, vram=None)[0] == 0
    assert suggest_gpu_layers(gguf, 2048, offload=False, vram=1 << 40)[0] == 0
    half = plan_memory(gguf, 2048, gpu_layers=9, offload=True)
    layers, why = suggest_gpu_layers(gguf, 2048, offload=True, vram=int(half.vram / 0.9) + 1)
    assert layers == 9 and why.startswith("9 of 18 layers fit")
    assert half.vram == sum(gguf.layer_bytes[9:]) + half.kv_vram + COMPUTE_OVERHEAD
    assert half.kv is not None and half.kv_vram == half.kv.total // 2  # Gemma 3's layers' caches are alike
    assert half.ram == gguf.size - sum(gguf.layer_bytes[9:]) + half.kv.total // 2 + COMPUTE_OVERHEAD
    problem = half.problem(MemoryLimits(ram=1 << 40, address_space=None, vram=half.vram - 1))
    assert problem is not None and "of GPU memory" in problem
