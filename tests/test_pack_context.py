"""The context a pack is written for (`recommended_n_ctx`): the default when
the player set none, within the model's trained context and the memory; a model loaded before the
pack was chosen gets a new context on the same weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from simularity_tui.engine import GenerationParams, ModelConfig, SamplingParams
from simularity_tui.model_session import context_for, fit_context, wanted_context, written_for
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.settings import Settings
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def written(loaded: LoadedPack, context: int | None) -> LoadedPack:
    pack = loaded.pack
    return replace(loaded, pack=pack.model_copy(update={"recommended_n_ctx": context}))


def test_the_pack_s_context_is_the_default_and_the_player_s_wins(lighthouse: LoadedPack) -> None:
    assert written_for(lighthouse.pack) == 4096
    pack = written(lighthouse, 8192).pack
    assert written_for(pack) == 8192 and wanted_context(Settings(), pack) == 8192
    player = Settings()
    player.model.n_ctx = 2048  # as --n-ctx sets it (or settings.toml)
    assert wanted_context(player, pack) == 2048
    assert wanted_context(Settings.model_validate({"model": {"n_ctx": 4096}}), pack) == 4096
    silent = lighthouse.pack.model_copy(update={"recommended_n_ctx": None})
    assert written_for(silent) is None and wanted_context(Settings(), silent) == Settings().model.n_ctx


async def test_a_session_that_cannot_resize_is_left_as_it_is(lighthouse: LoadedPack) -> None:
    session = FakeSession(n_ctx=1024)
    await fit_context(session, Settings(), written(lighthouse, 8192).pack)
    assert session.n_ctx == 1024


def test_a_context_beyond_the_model_is_cut_to_what_it_was_trained_for(model_path: Path, lighthouse: LoadedPack) -> None:
    assert context_for(Settings(), written(lighthouse, 1 << 20).pack, model_path) == 32768  # Gemma 3 270M's
    player = Settings()
    player.model.n_ctx = 1 << 20
    assert context_for(player, lighthouse.pack, model_path) == 1 << 20  # the player's: refused at load, in words


async def test_a_loaded_model_gets_the_pack_s_context_on_the_same_weights(
    model_path: Path, lighthouse: LoadedPack
) -> None:
    from simularity_tui.engine import LlamaSession  # llama.cpp: not in the fast tier

    session = await LlamaSession.open(ModelConfig(model_path, n_ctx=1024, n_threads=TEST_THREADS))
    try:
        weights = session._worker.model.ptr
        await fit_context(session, Settings(), written(lighthouse, 3072).pack)
        assert session.n_ctx == session.info.n_ctx == 3072 and session._worker.model.ptr == weights
        assert session.kv_tokens == ()
        params = GenerationParams(sampling=SamplingParams(temperature=0.0), max_tokens=4)
        generation = session.generate(session.tokenize("The lighthouse", add_bos=True), params)
        _text = [piece async for piece in generation]
        result = await generation.result()
        assert result.generated_tokens > 0 and len(session.kv_tokens) > 2  # the new context works
        await fit_context(session, Settings(), lighthouse.pack)  # back to 4096, the lighthouse's own
        assert session.n_ctx == 4096
    finally:
        await session.close()
