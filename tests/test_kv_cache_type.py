"""The KV cache in q8_0 (`[model] kv_cache`): half the state file beside a save, restored as saved,
shifted within the quality the shift promises; a file of the other type, or a q8_0 block scale that
is not a number, is refused with a warning before llama.cpp reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import Prompt
from tests.conftest import TEST_THREADS
from tests.test_context_shift import NEXT_TOKEN, conversation, kl, log_probs, run, shift_divergence
from tests.test_kv_hardening import first_cache, join, sign, split

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession


@pytest.fixture(scope="module")
def q8_session(model_path: Path) -> Iterator[LlamaSession]:
    """`small_session`'s model and context size, with a q8_0 KV cache."""
    from simularity_tui.engine import LlamaSession, ModelConfig  # llama.cpp loads here, not at collection

    loaded = LlamaSession.open_blocking(ModelConfig(model_path, n_ctx=512, n_threads=TEST_THREADS, kv_cache="q8_0"))
    yield loaded
    loaded.close_blocking()


async def saved_after(session: LlamaSession, turns: int, path: Path) -> tuple[list[int], int]:
    """A conversation of `turns` turns read into `session` and its state saved: the tokens, the size."""
    await session.reset()
    pinned, said = conversation(session, turns)
    await run(session, Prompt.of(pinned, said), NEXT_TOKEN)
    return list(session.kv_tokens), await session.save_state(path)


async def test_a_q8_0_cache_halves_the_state_file_and_restores_it(
    small_session: LlamaSession, q8_session: LlamaSession, tmp_path: Path
) -> None:
    tokens, f16_size = await saved_after(small_session, 8, tmp_path / "f16.kv")
    f16_next = log_probs(small_session)
    q8_tokens, q8_size = await saved_after(q8_session, 8, tmp_path / "q8.kv")
    q8_next = log_probs(q8_session)
    assert q8_tokens == tokens and len(tokens) > 250
    print(f"state file: f16 {f16_size:,} bytes, q8_0 {q8_size:,} ({q8_size / f16_size:.2f}x)")
    assert q8_size <= 0.55 * f16_size
    assert kl(f16_next, q8_next) <= 0.002  # measured 0.0002: the cache's rounding barely shows

    # A restore reads the last token again, alone, on the state it loads: the story it was saved
    # from does the same, for a like comparison (a batch of one and the prompt's batch of hundreds
    # take different kernels, and their roundings differ by a KL of ~1e-4 on some CPUs).
    worker = q8_session._worker
    assert await asyncio.get_running_loop().run_in_executor(q8_session._executor, worker._reads_back, q8_tokens)
    alone = log_probs(q8_session)
    await q8_session.reset()
    restored = await q8_session.restore_state(tmp_path / "q8.kv")
    assert restored.tokens == len(tokens) and restored.warning is None
    assert kl(alone, log_probs(q8_session)) <= 1e-6  # the same state, read back exactly


async def test_a_state_file_of_the_other_cache_type_is_refused_with_a_warning(
    small_session: LlamaSession, q8_session: LlamaSession, tmp_path: Path
) -> None:
    await saved_after(small_session, 4, tmp_path / "f16.kv")
    kept, _ = await saved_after(q8_session, 3, tmp_path / "q8.kv")
    restored = await q8_session.restore_state(tmp_path / "f16.kv")
    assert restored.tokens == 0
    assert restored.warning == (
        "f16.kv: it holds a f16 KV cache, and this game keeps q8_0 ([model] kv_cache); the story is read again instead."
    )
    assert list(q8_session.kv_tokens) == kept  # refused before the KV was touched
    restored = await small_session.restore_state(tmp_path / "q8.kv")
    assert restored.tokens == 0 and "it holds a q8_0 KV cache, and this game keeps f16" in (restored.warning or "")


async def test_a_q8_0_block_scale_that_is_not_a_number_is_refused(q8_session: LlamaSession, tmp_path: Path) -> None:
    path = tmp_path / "q8.kv"
    tokens, _ = await saved_after(q8_session, 3, path)
    header, payload = split(path.read_bytes())
    _cells, keys = first_cache(payload)
    damaged = bytearray(payload)
    damaged[keys + 34 * 5 : keys + 34 * 5 + 2] = b"\x00\x7c"  # the sixth block's scale: f16 infinity
    path.write_bytes(join(sign(header, bytes(damaged)), bytes(damaged)))
    await q8_session.reset()
    restored = await q8_session.restore_state(path)
    assert restored.tokens == 0 and "NaN or infinity" in (restored.warning or "")
    assert q8_session.kv_tokens == ()
    again = await run(q8_session, tokens, NEXT_TOKEN)  # and the story is read again, as promised
    assert again.evaluated_tokens == len(tokens)


async def test_after_a_shift_a_q8_0_cache_stays_near_a_fresh_evaluation(q8_session: LlamaSession) -> None:
    """A shift re-rotates q8_0 keys through f32 and rounds them again: further from a fresh
    evaluation than f16 (KL 0.0035), within the 0.02 the summary insertion is held to."""
    divergence, shifted = await shift_divergence(q8_session, 3)
    print(f"q8_0: KL(fresh || shifted) = {divergence:.5f} after shifting out {shifted} tokens")
    assert divergence <= 0.02
