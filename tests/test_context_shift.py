"""The context-shift engine on the real model: whole-turn eviction without re-evaluation, the
quality of what it keeps, the forced fallback, and conversations many times the context long."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from simularity_tui.bench.script import PLAYER_LINES, SCENARIO
from simularity_tui.engine import GenerationParams, Prompt, SamplingParams
from simularity_tui.engine.context_window import LOW_WATER

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)
NEXT_TOKEN = GenerationParams(sampling=GREEDY, max_tokens=1, heal=False)  # leaves the prompt's logits
MIRA_LINES = (
    "Mind the stairs, they are older than both of us.",
    "The lamp turns every ten seconds. Do not count them aloud.",
    "Pip only trusts people who bring fish.",
    "Sit by the stove and dry your boots.",
    "Nobody has climbed to the gallery since my father died.",
    "If you hear bells, do not answer them.",
    "Tea is in the blue tin. Sugar is a rumour.",
    "The logbook is not for reading. Put it down.",
)


def conversation(session: LlamaSession, count: int, offset: int = 0) -> tuple[list[int], list[list[int]]]:
    pinned = [session.bos_token, *session.tokenize(SCENARIO[:400] + "\n\nStory:\n")]
    turns = [
        session.tokenize(f"Ash: {PLAYER_LINES[(i + offset) % 12]}\nMira: {MIRA_LINES[(i + offset) % 8]}\n")
        for i in range(count)
    ]
    return pinned, turns


async def run(session: LlamaSession, prompt: Prompt | list[int], params: GenerationParams):  # type: ignore[no-untyped-def]
    generation = session.generate(prompt, params)
    async for _piece in generation:
        pass
    return await generation.result()


def log_probs(session: LlamaSession) -> np.ndarray:
    """The distribution the last evaluation left for the next token."""
    import llama_cpp  # in the test: the fast tier collects this module without llama.cpp

    worker = session._worker
    pointer = llama_cpp.llama_get_logits_ith(worker.context.ptr, -1)
    logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(worker.model.n_vocab,))
    shifted = logits.astype(np.float64) - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def kl(reference: np.ndarray, other: np.ndarray) -> float:
    return float((np.exp(reference) * (reference - other)).sum())


def kv_is_consistent(session: LlamaSession) -> bool:
    return session._worker.context.last_position() == len(session.kv_tokens) - 1


async def test_old_turns_are_shifted_out_and_never_read_again(small_session: LlamaSession) -> None:
    from simularity_tui.engine.kv_cache import REFRESH_TOKENS  # llama.cpp: not at collection

    session = small_session
    await session.reset()
    pinned, turns = conversation(session, 45)
    shifts = 0
    for count in range(1, len(turns) + 1):
        result = await run(session, Prompt.of(pinned, turns[:count]), NEXT_TOKEN)
        window = pinned + [t for turn in turns[result.first_turn : count] for t in turn]
        assert list(session.kv_tokens) == window and kv_is_consistent(session)
        if count > 1:  # only the new turn is read, plus a short refresh after a shift
            assert result.evaluated_tokens <= len(turns[count - 1]) + (REFRESH_TOKENS if result.shifted_tokens else 0)
        if result.shifted_tokens:
            shifts += 1
            assert len(window) <= LOW_WATER * session.n_ctx  # evicted in one chunk, down to the low-water mark
    assert shifts >= 3
    assert result.first_turn > 25


async def shift_divergence(session: LlamaSession, offset: int) -> tuple[float, int]:
    """A conversation played until the context first shifts: KL(fresh || shifted) of the next token
    against the same kept tokens evaluated from nothing, and how many tokens the shift evicted."""
    from simularity_tui.engine.kv_cache import REFRESH_TOKENS  # llama.cpp: not at collection

    await session.reset()
    pinned, turns = conversation(session, 20, offset)
    for count in range(1, len(turns) + 1):
        result = await run(session, Prompt.of(pinned, turns[:count]), NEXT_TOKEN)
        if result.shifted_tokens:
            break
    else:
        raise AssertionError("the context never shifted")
    # The new turn, and the kept tokens' last few again: their keys saw the evicted turns.
    assert result.evaluated_tokens == len(turns[count - 1]) + REFRESH_TOKENS, result.evaluated_tokens
    after_shift = log_probs(session)
    kept = list(session.kv_tokens)
    await session.reset()
    await run(session, kept, NEXT_TOKEN)  # the same kept tokens, evaluated from nothing
    return kl(log_probs(session), after_shift), result.shifted_tokens


@pytest.mark.parametrize("offset", [0, 3, 7])
async def test_after_a_shift_the_next_token_matches_a_fresh_evaluation(
    small_session: LlamaSession, offset: int
) -> None:
    divergence, shifted = await shift_divergence(small_session, offset)
    print(f"KL(fresh || shifted) = {divergence:.5f} after shifting out {shifted} tokens")
    # Measured 0.005-0.009 on an AVX2 CPU, 0.003-0.013 on an AVX-512 one (other kernels, other
    # roundings); 0.008-0.020 without the refresh. The bound a new summary is held to as well.
    assert divergence <= 0.02


async def test_the_fallback_reevaluates_the_kept_window(unshifting_session: LlamaSession) -> None:
    session = unshifting_session
    assert not session.info.context_shift
    await session.reset()
    pinned, turns = conversation(session, 20)
    for count in range(1, len(turns) + 1):
        before = list(session.kv_tokens)
        result = await run(session, Prompt.of(pinned, turns[:count]), NEXT_TOKEN)
        assert result.shifted_tokens == 0 and kv_is_consistent(session)
        if result.first_turn:
            break
    else:
        raise AssertionError("the window never moved")
    kept = list(session.kv_tokens)
    common = next(i for i, (a, b) in enumerate(zip(before, kept)) if a != b)
    assert common >= len(pinned)
    assert result.evaluated_tokens == len(kept) - common  # everything after the pinned block, read again
    re_evaluated = log_probs(session)
    await session.reset()
    await run(session, kept, NEXT_TOKEN)
    assert kl(log_probs(session), re_evaluated) < 1e-3


@pytest.mark.parametrize("offset", [0, 3, 7])
async def test_a_new_summary_is_put_in_place_without_reading_the_turns_again(
    small_session: LlamaSession, offset: int
) -> None:
    """The pinned block's tail (the summary) changes: only the new tail and a short refresh are
    read; the next token then matches a fresh evaluation of the same tokens (KL <= 0.02)."""
    from simularity_tui.engine.kv_cache import REFRESH_TOKENS  # llama.cpp: not at collection

    session = small_session
    await session.reset()
    pinned, turns = conversation(session, 6, offset)
    before = pinned + session.tokenize("Summary: Ash arrived.\n")
    await run(session, Prompt.of(before, turns), NEXT_TOKEN)
    for summary in ("Summary: Ash arrived soaked, and Mira let him in but forbade the lamp room.\n", "Summary: -\n"):
        changed = pinned + session.tokenize(summary)
        result = await run(session, Prompt.of(changed, turns), NEXT_TOKEN)
        tail = len(changed) - len(pinned) - 2  # "Summary:" is shared
        assert result.evaluated_tokens <= tail + REFRESH_TOKENS + 1 and result.evaluated_tokens >= REFRESH_TOKENS
        held = list(session.kv_tokens)
        assert held == changed + [t for turn in turns for t in turn] and kv_is_consistent(session)
        spliced = log_probs(session)
        await session.reset()
        await run(session, held, NEXT_TOKEN)  # the same tokens, evaluated from nothing
        divergence = kl(log_probs(session), spliced)
        print(f"KL(fresh || spliced) = {divergence:.5f} for a summary of {tail} new tokens")
        assert divergence <= 0.02
        await run(session, Prompt.of(changed, turns), NEXT_TOKEN)  # as it stood: the next change splices


async def test_a_summary_evicting_turns_too_slides_the_kept_ones(small_session: LlamaSession) -> None:
    """A longer summary whose window drops the oldest turns: they leave with the old tail."""
    session = small_session
    await session.reset()
    pinned, turns = conversation(session, 6)
    await run(session, Prompt.of(pinned + session.tokenize("Summary: -\n"), turns), NEXT_TOKEN)
    changed = pinned + session.tokenize("Summary: Ash arrived; Mira let him in.\n")
    result = await run(session, Prompt.of(changed, turns[2:]), NEXT_TOKEN)
    assert list(session.kv_tokens) == changed + [t for turn in turns[2:] for t in turn] and kv_is_consistent(session)
    assert result.evaluated_tokens < sum(len(turn) for turn in turns[2:])
    # No summary at all (memory cleared): the old tail only goes, and the turns slide left.
    result = await run(session, Prompt.of(pinned, turns[2:]), NEXT_TOKEN)
    assert list(session.kv_tokens) == pinned + [t for turn in turns[2:] for t in turn] and kv_is_consistent(session)
    assert result.evaluated_tokens <= 16 + 1


async def test_a_reply_that_fills_the_context_evicts_and_goes_on(small_session: LlamaSession) -> None:
    session = small_session
    await session.reset()
    # Nine turns are read whole beside the 129 tokens kept for the reply, so the shift is the reply's:
    # it fills the context ~150 tokens in and goes on ~50 past (each reply token is a decode).
    pinned, turns = conversation(session, 9)
    prompt_tokens = len(pinned) + sum(map(len, turns))
    assert prompt_tokens + 129 <= session.n_ctx < prompt_tokens + 200
    endless = 'root ::= line\nline ::= "la " line\n'  # never complete: only max_tokens ends it
    params = GenerationParams(sampling=GREEDY, max_tokens=200, grammar=endless)
    result = await run(session, Prompt.of(pinned, turns), params)
    assert result.stop_reason == "length" and result.generated_tokens == 200
    assert result.shifted_tokens > 0 and result.first_turn > 0
    assert kv_is_consistent(session) and len(session.kv_tokens) < session.n_ctx


async def test_six_contexts_of_turns_play_without_an_error(small_session: LlamaSession) -> None:
    from simularity_tui.engine.kv_cache import REFRESH_TOKENS  # llama.cpp: not at collection

    session = small_session
    await session.reset()
    pinned = [session.bos_token, *session.tokenize(SCENARIO[:300] + "\nStory:\n")]
    turns: list[list[int]] = []
    total = 0
    turn = 0
    while total < 6 * session.n_ctx:
        line = " ".join(PLAYER_LINES[(turn + k) % 12] for k in range(5))
        opened = session.tokenize(f"Ash: {line}\nMira:")
        # A short reply: each reply token is a decode over the whole vocabulary, where the turn's ~70
        # prompt tokens go in one batch; three still sample past the healed token into the reply.
        params = GenerationParams(sampling=SamplingParams(seed=turn), max_tokens=3)
        result = await run(session, Prompt.of(pinned, [*turns, opened]), params)
        assert result.stop_reason != "context_full"
        if turn:  # after the first, each turn reads its own tokens (and a refresh when it shifts)
            assert result.evaluated_tokens <= len(opened) + REFRESH_TOKENS + 2
        completed = opened[: len(opened) - result.healed_tokens] + list(result.tokens) + session.tokenize("\n")
        turns.append(completed)
        total += len(completed)
        turn += 1
    assert kv_is_consistent(session)
    assert result.first_turn > turn - 10  # the window moved along with the story (6 contexts: 30-odd turns)


async def test_a_cancel_while_the_reply_makes_room_ends_cleanly(unshifting_session: LlamaSession) -> None:
    # Without shifting, making room mid-reply re-evaluates the kept window (~0.3 s): the token list
    # drops to the pinned block while that runs. Cancel then, so the abort lands inside it.
    session = unshifting_session
    await session.reset()
    pinned, turns = conversation(session, 8)
    endless = 'root ::= line\nline ::= "la " line\n'
    generation = session.generate(
        Prompt.of(pinned, turns), GenerationParams(sampling=GREEDY, max_tokens=300, grammar=endless)
    )

    async def cancel_while_making_room() -> None:
        highest = 0
        while not generation.cancel_event.is_set():
            size = len(session.kv_tokens)
            highest = max(highest, size)
            if size < highest - 50:
                generation.cancel()
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(cancel_while_making_room())
    async for _piece in generation:
        pass
    result = await generation.result()
    watcher.cancel()
    assert result.stop_reason == "cancelled"
    assert kv_is_consistent(session)
    assert list(session.kv_tokens[: len(pinned)]) == pinned


async def test_making_room_keeps_the_pinned_block_on_memory_that_cannot_drop_a_tail(
    unshifting_session: LlamaSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Recurrent and hybrid models (not runnable here) refuse to remove any partial range;
    # llama.cpp's answer for them is what this stand-in gives.
    session = unshifting_session
    await session.reset()
    monkeypatch.setattr(session._worker.context, "forget_from", lambda position: False)
    pinned, turns = conversation(session, 8)
    endless = 'root ::= line\nline ::= "la " line\n'
    result = await run(
        session, Prompt.of(pinned, turns), GenerationParams(sampling=GREEDY, max_tokens=200, grammar=endless)
    )
    assert result.generated_tokens == 200 and result.first_turn > 0
    kv = session._worker.kv
    assert list(kv.tokens[: kv.n_keep]) == pinned and kv.n_keep == len(pinned)
    assert all(session.detokenize(kv.tokens[start : start + 2]) == "Ash:" for start in kv.turn_starts[:-1])
    assert kv_is_consistent(session)


def test_a_cancel_right_after_a_shift_cannot_corrupt_the_keys(small_session: LlamaSession) -> None:
    """llama.cpp re-rotates shifted keys inside the next decode; an abort there must not land."""
    import llama_cpp

    worker = small_session._worker
    context, model = worker.context, worker.model

    def logits_after_shift(cancel_at_once: bool) -> np.ndarray:
        tokens = [model.bos, *model.tokenize(" ".join(f"Ash walked {i} miles with Mira." for i in range(40)))][:300]
        event = threading.Event()
        context.abort.watch(event)
        context.clear()
        context.decode(tokens, 0)
        assert context.shift(50, 100)
        if cancel_at_once:
            event.set()
        context.decode(model.tokenize(" Then")[:1], 250)  # the first token after a shift always lands
        logits = llama_cpp.llama_get_logits_ith(context.ptr, -1)
        return np.ctypeslib.as_array(ctypes.cast(logits, ctypes.POINTER(ctypes.c_float)), shape=(model.n_vocab,)).copy()

    def compare() -> float:
        return float(np.abs(logits_after_shift(False) - logits_after_shift(True)).max())

    difference = small_session._executor.submit(compare).result()
    small_session._executor.submit(worker.reset).result()
    assert difference == 0.0


async def test_through_shifts_and_rollbacks_the_sliding_window_keeps_every_key_it_needs(session: LlamaSession) -> None:
    """Gemma 3's sliding layers see the last 512 positions. llama.cpp gives a new token a cell
    whose position lies outside its sequence's window, and then drops every older position of
    that sequence on those layers; a shift brings the pinned block back into the window, and a
    rollback older lines. The story's cells must never be taken so (native.py: GUARD_SEQ): past
    two shifts and a rollback of two turns every fifth, the sliding layers still hold position 0
    and the next token matches the same tokens evaluated from nothing."""
    await session.reset()
    context = session._worker.context
    assert session.n_ctx > 2 * 512  # the window: gemma3.attention.sliding_window
    pinned, turns = conversation(session, 400)
    shifts = 0
    for count in range(1, len(turns) + 1):
        if count % 5 == 0:  # a regenerate two turns back, as undo and regenerate roll back
            await run(session, Prompt.of(pinned, turns[: count - 2]), NEXT_TOKEN)
        result = await run(session, Prompt.of(pinned, turns[:count]), NEXT_TOKEN)
        assert context.first_position() == 0, f"turn {count}: the sliding layers lost every position below it"
        shifts += bool(result.shifted_tokens)
        if shifts == 2:
            break
    assert shifts == 2
    after = log_probs(session)
    kept = list(session.kv_tokens)
    await session.reset()
    await run(session, kept, NEXT_TOKEN)
    divergence = kl(log_probs(session), after)
    print(f"KL(fresh || kept through {count} turns and two shifts) = {divergence:.5f}")
    assert divergence <= 0.01


async def test_a_state_file_brings_back_the_keys_a_rollback_after_resuming_needs(
    session: LlamaSession, tmp_path: Path
) -> None:
    """A state file holds every cell of every layer, not only the sliding layers' newest window
    (what llama.cpp saves of one sequence): right after resuming, a regenerate ten turns back reads
    only what it lacks, and the next token matches the same tokens evaluated from nothing."""
    await session.reset()
    pinned, turns = conversation(session, 40)
    await run(session, Prompt.of(pinned, turns), NEXT_TOKEN)
    held = session.kv_tokens
    assert len(held) > 2 * 512  # past the sliding window, twice
    state = tmp_path / "story.kv"
    assert await session.save_state(state) > 0
    await session.reset()
    restored = await session.restore_state(state)
    assert restored.warning is None and restored.tokens == len(held) and session.kv_tokens == held
    assert session._worker.context.first_position() == 0
    back = Prompt.of(pinned, turns[:30])
    result = await run(session, back, NEXT_TOKEN)
    assert result.evaluated_tokens <= 1  # the last token, for its logits: the rest is held
    after = log_probs(session)
    await session.reset()
    await run(session, back.flat(), NEXT_TOKEN)
    assert kl(log_probs(session), after) <= 1e-3
