"""On a CPU with Intel AMX the model's weights keep llama.cpp's plain layout (engine/amx.py): the
AMX layout crashes the first prompt on some machines. The flag is read from /proc/cpuinfo's format
(proc(5)); every place that loads a model follows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from simularity_tui.engine import amx
from simularity_tui.engine.remote import llama_server
from simularity_tui.engine.remote.llama_server import LlamaServerSpec

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme de pse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 hypervisor
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme de pse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 hypervisor
"""
ICE_LAKE = SAPPHIRE_RAPIDS.replace(" amx_bf16 amx_tile amx_int8", "")


@pytest.mark.parametrize(("cpuinfo", "has"), [(SAPPHIRE_RAPIDS, True), (ICE_LAKE, False), ("", False)])
def test_amx_is_read_from_the_cpus_flags(tmp_path: Path, cpuinfo: str, has: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert amx.cpu_has_amx(path) is has


def test_no_cpuinfo_means_no_amx(tmp_path: Path) -> None:
    assert amx.cpu_has_amx(tmp_path / "missing") is False  # macOS, Windows: nothing to read


def test_plain_layout_where_the_cpu_has_amx_unless_the_environment_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(amx.KEEP_AMX_VARIABLE, raising=False)
    for has in (True, False):
        monkeypatch.setattr(amx, "cpu_has_amx", lambda has=has: has)
        assert amx.plain_layout() is has
    monkeypatch.setattr(amx, "cpu_has_amx", lambda: True)
    monkeypatch.setenv(amx.KEEP_AMX_VARIABLE, "1")
    assert amx.plain_layout() is False


@pytest.mark.parametrize("plain", [True, False])
def test_llama_server_keeps_the_plain_layout_where_the_cpu_has_amx(
    monkeypatch: pytest.MonkeyPatch, plain: bool
) -> None:
    monkeypatch.setattr(llama_server, "plain_layout", lambda: plain)
    arguments = LlamaServerSpec(Path("m.gguf"), n_ctx_per_slot=1024).arguments(8080)
    assert ("--no-repack" in arguments) is plain


def test_the_engine_loads_the_weights_plain_where_the_cpu_has_amx(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from simularity_tui.engine import native  # llama.cpp: not at collection

    def buffers() -> set[str]:
        """The buffer types llama.cpp put weights in, from its log ("load_tensors: AMX model buffer size = …")."""
        return {
            record.getMessage().split(":")[1].split()[0]
            for record in caplog.records
            if record.getMessage().startswith("load_tensors:") and "model buffer size" in record.getMessage()
        }

    caplog.set_level("INFO", logger="simularity.llama")
    monkeypatch.setattr(native, "plain_layout", lambda: True)
    native.NativeModel(str(model_path), 0).close()
    # No AMX and no repacked layout: the weights as mapped. (Only where the CPU would repack
    # Gemma's Q4_K can this fail: AMX, AVX2 and Arm CPUs do.)
    assert buffers() == {"CPU_Mapped"}, buffers()


def test_llama_cpp_pythons_own_models_follow(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    monkeypatch.setattr(amx, "plain_layout", lambda: True)
    monkeypatch.setattr(bindings, "llama_model_default_params", bindings.llama_model_default_params)
    assert bindings.llama_model_default_params().use_extra_bufts
    amx.plain_layout_in_llama_cpp_python()
    amx.plain_layout_in_llama_cpp_python()  # once is enough: not wrapped twice
    assert bindings.llama_model_default_params.plain_layout  # type: ignore[attr-defined]
    llm = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
    assert not llm.model_params.use_extra_bufts
    llm.close()
