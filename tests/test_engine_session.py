"""The async llama.cpp session on the real embedded model: reuse, cancel, stalls, queueing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import GenerationParams, Prompt, SamplingParams
from simularity_tui.engine.errors import GrammarError, PromptTooLongError

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)


def story_prompt(session: LlamaSession, text: str) -> list[int]:
    return [session.bos_token, *session.tokenize(text)] if session.bos_token is not None else session.tokenize(text)


async def run(session: LlamaSession, prompt: list[int], params: GenerationParams) -> tuple[str, object]:
    generation = session.generate(prompt, params)
    text = "".join([piece async for piece in generation])
    return text, await generation.result()


def kv_is_consistent(session: LlamaSession) -> bool:
    """The token list mirrors the KV: llama.cpp holds exactly positions 0..len-1."""
    return session._worker.context.last_position() == len(session.kv_tokens) - 1


async def test_each_turn_evaluates_only_the_new_tokens(session: LlamaSession) -> None:
    prompt = story_prompt(session, "A conversation at the harbour.\nMara: Where is the ferry?\nTom:")
    params = GenerationParams(sampling=SamplingParams(seed=7), max_tokens=24)
    new_tokens: list[int] = []
    for turn in range(4):
        in_kv = session.kv_tokens
        _text, result = await run(session, prompt, params)
        if turn:
            # Exactly what the KV lacked was read, up to where healing rolled the prompt's end back.
            assert list(in_kv) == prompt[: len(in_kv)]
            assert result.evaluated_tokens == len(prompt) - result.healed_tokens - len(in_kv)
            assert result.evaluated_tokens <= len(new_tokens) + 1
        assert kv_is_consistent(session)
        # The next prompt continues with the generated tokens themselves, never their re-tokenized
        # text; healing replaced the prompt's last token with the start of the reply.
        new_tokens = session.tokenize(f"\nMara: That is turn {turn}, then.\nTom:")
        prompt = prompt[: len(prompt) - result.healed_tokens] + list(result.tokens) + new_tokens


async def test_a_prompt_read_to_its_end_is_drawn_from_at_once_and_read_again_once_the_kv_moved_on(
    session: LlamaSession,
) -> None:
    """The logits of the last token read stay at hand: a generation of exactly the prompt read
    ahead (idle time) reads nothing and writes what reading the prompt and writing at once writes.
    Once the story's KV went on (the reply was read into it), the prompt's last token is read again."""
    await session.reset()
    prompt = story_prompt(session, "The harbour log. Mara keeps the ferry; Tom mends the nets.\nTom:")
    tell = GenerationParams(sampling=GREEDY, max_tokens=8, heal=False)
    expected, _result = await run(session, prompt, tell)
    await session.reset()
    await run(session, prompt, GenerationParams(max_tokens=0, heal=False))  # read ahead, as idle time does
    text, result = await run(session, prompt, tell)
    assert result.evaluated_tokens == 0 and text == expected
    assert len(session.kv_tokens) > len(prompt)  # the reply went into the KV
    _text, result = await run(session, prompt, tell)
    assert result.evaluated_tokens == 1 and kv_is_consistent(session)


async def test_an_edit_in_the_history_reevaluates_from_the_edit(session: LlamaSession) -> None:
    prompt = story_prompt(session, "Line one of the log.\nLine two of the log.\nLine three of the log.\n")
    await run(session, prompt, GenerationParams(sampling=GREEDY, max_tokens=4))
    edited_at = len(story_prompt(session, "Line one of the log.\nLine two"))
    edited = prompt[:edited_at] + session.tokenize(" was rewritten.\nLine three of the log.\n")
    _text, result = await run(session, edited, GenerationParams(sampling=GREEDY, max_tokens=4))
    assert result.evaluated_tokens == len(edited) - result.healed_tokens - edited_at
    assert kv_is_consistent(session)


async def test_cancel_during_decode_stops_within_100ms(session: LlamaSession) -> None:
    prompt = story_prompt(session, "Chapter One\n\nThe caravan left the city at dawn, and")
    generation = session.generate(prompt, GenerationParams(sampling=SamplingParams(seed=3), max_tokens=400))
    pieces = 0
    async for _piece in generation:
        pieces += 1
        if pieces == 10:
            cancelled_at = time.perf_counter()
            generation.cancel()
    result = await generation.result()
    latency = time.perf_counter() - cancelled_at
    assert result.stop_reason == "cancelled"
    print(f"cancel latency {latency * 1000:.1f} ms")
    assert latency < 0.100, f"stopped {latency * 1000:.0f} ms after cancel"
    assert kv_is_consistent(session)


async def test_cancel_during_a_long_prefill_stops_within_100ms(session: LlamaSession) -> None:
    # ~1,500 tokens no earlier test has put in the KV: about 2.5 s of prefill on two threads.
    text = " ".join(f"Entry {n}: the tide rose {n % 7} feet at bell {n % 12}." for n in range(110))
    prompt = story_prompt(session, text)
    assert 1200 < len(prompt) < 1900
    generation = session.generate(prompt, GenerationParams(sampling=GREEDY, max_tokens=8))
    await asyncio.sleep(0.3)
    cancelled_at = time.perf_counter()
    generation.cancel()
    result = await generation.result()
    latency = time.perf_counter() - cancelled_at
    assert result.stop_reason == "cancelled" and result.generated_tokens == 0
    print(f"cancel latency {latency * 1000:.1f} ms")
    assert latency < 0.100, f"stopped {latency * 1000:.0f} ms after cancel"
    # The KV holds a prefix of the prompt, and the token list says exactly which.
    kv = session.kv_tokens
    assert list(kv) == prompt[: len(kv)] and len(kv) < len(prompt)
    assert kv_is_consistent(session)
    # The session goes on: the same prompt now evaluates only what the cancel left out.
    _text, finished = await run(session, prompt, GenerationParams(sampling=GREEDY, max_tokens=8))
    assert finished.evaluated_tokens == len(prompt) - finished.healed_tokens - len(kv)
    assert finished.generated_tokens > 0


async def test_the_event_loop_never_stalls_50ms(session: LlamaSession) -> None:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    text = " ".join(f"Record {n}: a gull landed on post {n % 9}." for n in range(90))
    prompt = story_prompt(session, text)  # a long, new prefill, then decoding
    _text, result = await run(session, prompt, GenerationParams(sampling=SamplingParams(seed=5), max_tokens=80))
    running = False
    await tick
    assert result.evaluated_tokens > 600 and result.generated_tokens > 20
    assert len(gaps) > 100
    print(f"longest stall {max(gaps) * 1000:.1f} ms")
    assert max(gaps) < 0.050, f"longest stall {max(gaps) * 1000:.1f} ms"


async def test_concurrent_requests_are_queued_and_run_one_at_a_time(session: LlamaSession) -> None:
    arrivals: dict[int, list[float]] = {0: [], 1: [], 2: []}
    prompts = [story_prompt(session, f"Story number {n}. Once upon a time") for n in range(3)]
    generations = [session.generate(p, GenerationParams(sampling=GREEDY, max_tokens=12)) for p in prompts]

    async def consume(index: int) -> None:
        async for _piece in generations[index]:
            arrivals[index].append(time.perf_counter())

    await asyncio.gather(*(consume(i) for i in range(3)))
    results = [await g.result() for g in generations]
    for earlier, later in ((0, 1), (1, 2)):
        assert arrivals[earlier] and arrivals[later]
        assert max(arrivals[earlier]) < min(arrivals[later]), "two generations interleaved"
    assert all(r.generated_tokens > 0 for r in results)
    assert kv_is_consistent(session)


async def test_a_queued_request_cancelled_before_it_starts_never_runs(session: LlamaSession) -> None:
    prompt = story_prompt(session, "The bell rang once, and")
    first = session.generate(prompt, GenerationParams(sampling=GREEDY, max_tokens=20))
    second = session.generate(prompt, GenerationParams(sampling=GREEDY, max_tokens=20))
    second.cancel()
    assert [p async for p in second] == []
    assert (await second.result()).stop_reason == "cancelled"
    assert (await first.result()).generated_tokens > 0


async def test_a_given_seed_repeats_and_no_seed_draws_a_fresh_one(session: LlamaSession) -> None:
    prompt = story_prompt(session, "The wizard opened the book and read aloud:")
    seeded = GenerationParams(sampling=SamplingParams(temperature=1.0, seed=1234), max_tokens=20)
    first, r1 = await run(session, prompt, seeded)
    second, r2 = await run(session, prompt, seeded)
    assert first == second and r1.seed == r2.seed == 1234
    fresh = GenerationParams(sampling=SamplingParams(temperature=1.0), max_tokens=20)
    outcomes = [await run(session, prompt, fresh) for _ in range(3)]
    assert len({result.seed for _text, result in outcomes}) == 3
    assert len({text for text, _result in outcomes}) > 1


async def test_max_tokens_and_stop_strings(session: LlamaSession) -> None:
    prompt = story_prompt(session, "Count: one, two, three, four, five, six,")
    text, result = await run(session, prompt, GenerationParams(sampling=GREEDY, max_tokens=5))
    assert result.stop_reason in ("length", "eos") and result.generated_tokens <= 5
    text, result = await run(session, prompt, GenerationParams(sampling=GREEDY, max_tokens=60, stop=["nine"]))
    assert result.stop_reason == "stop" and result.stop_string == "nine"
    assert "nine" not in text and text.strip().startswith("seven")
    # The tokens re-write the healed end of the prompt, then cover the streamed text up to the tail.
    healed_text = session.detokenize(prompt[len(prompt) - result.healed_tokens :])
    assert result.healed_tokens == 1 and healed_text == ","
    assert session.detokenize(result.tokens) + result.tail_text == healed_text + text
    assert text == result.text


async def test_a_grammar_constrains_the_output(session: LlamaSession) -> None:
    prompt = story_prompt(session, "Is the sea made of water? Answer:")
    grammar = 'root ::= " " ("yes" | "no") ", because " [a-z ]+ "."\n'
    for seed in (1, 2, 3):
        text, result = await run(
            session, prompt, GenerationParams(sampling=SamplingParams(seed=seed), max_tokens=40, grammar=grammar)
        )
        assert text.startswith((" yes, because ", " no, because "))
        if result.stop_reason == "eos":
            assert text.endswith(".") and set(text[len(" yes, because ") : -1]) <= set("abcdefghijklmnopqrstuvwxyz ")


async def test_a_broken_grammar_is_a_clear_error(session: LlamaSession) -> None:
    generation = session.generate(story_prompt(session, "x"), GenerationParams(grammar="root ::= ( unclosed"))
    with pytest.raises(GrammarError, match="does not parse"):
        async for _piece in generation:
            pass


async def test_a_pinned_block_longer_than_the_context_is_refused(session: LlamaSession) -> None:
    pinned = story_prompt(session, "word " * (session.n_ctx + 10))
    with pytest.raises(PromptTooLongError, match="pinned part"):
        await run(session, Prompt.of(pinned, [session.tokenize("Hello")]), GenerationParams(max_tokens=4))
    assert kv_is_consistent(session)


MEMORY_PROBE = """
import asyncio, sys
from pathlib import Path

import psutil

from simularity_tui.engine import GenerationParams, LlamaSession, ModelConfig, SamplingParams


def private_anonymous_mib() -> float:
    maps = psutil.Process().memory_maps(grouped=True)
    return sum(m.private_clean + m.private_dirty for m in maps if not m.path.startswith("/")) / 2**20


async def main() -> None:
    session = await LlamaSession.open(ModelConfig(Path(sys.argv[1]), n_ctx=1024, n_threads=2))
    prompt = session.tokenize("The keeper said: " + "the sea is rough tonight and the lamp must burn. " * 40)
    plain = GenerationParams(SamplingParams(seed=1), max_tokens=8)
    await session.generate(prompt, plain).result()  # llama.cpp's buffers, which stay in use
    await session.reset()
    warm = private_anonymous_mib()
    constrained = GenerationParams(SamplingParams(seed=1), max_tokens=64, grammar='root ::= [a-z ]+ "\\n"')
    for _ in range(2):
        await session.generate(prompt, constrained).result()
    await asyncio.sleep(1.5)  # idle, as a player reading the reply
    await session.reset()  # queued after what the idle time set off
    print(private_anonymous_mib() - warm)


asyncio.run(main())
"""


def test_memory_freed_after_a_grammar_generation_goes_back_to_the_system(model_path: Path) -> None:
    """llama.cpp's grammar sampler decodes the whole vocabulary at each step, in short-lived
    allocations; glibc would keep the freed pages (74 MiB after these two replies), and a host would
    pay that once per player."""
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(model_path)], capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    grown = float(probe.stdout.strip().splitlines()[-1])
    assert grown < 25, f"{grown:.0f} MiB more private memory than before the grammar's replies"


async def test_a_generation_aside_reads_only_its_own_part_and_leaves_the_story_as_it_was(
    session: LlamaSession,
) -> None:
    """A generation aside (a summary while the turn to come waits read ahead) shares what it has in
    common with the story's KV, reads the rest and writes in cells of its own, and drops them: the
    story's tokens and their keys and values are exactly as before, and the aside writes what a
    generation of the same prompt writes on a fresh context."""
    from simularity_tui.engine.native import problems_mark

    tell = GenerationParams(sampling=GREEDY, max_tokens=12, heal=False)
    pinned = story_prompt(session, "The harbour log. Mara keeps the ferry; Tom mends the nets.\n")
    lines = [session.tokenize(f"Mara: The tide is turning, day {day}.\n") for day in range(6)]
    draft = session.tokenize("Tom: Is the ferry late again?\nMara:")  # read ahead after the lines
    request = session.tokenize("[Not part of the story: what happened so far, in one line:]\n")
    story, aside = Prompt.of(pinned, [*lines, draft]), Prompt.of(pinned, [*lines, request])

    async def fresh(prompt: Prompt) -> str:  # read ahead, then written: as the story does it
        await session.reset()
        await run(session, prompt, GenerationParams(max_tokens=0, heal=False))
        return (await run(session, prompt, tell))[0]

    expected_aside, expected_story = await fresh(aside), await fresh(story)
    await session.reset()
    await run(session, story, GenerationParams(max_tokens=0, heal=False))  # read ahead: the story and the draft
    held, room = session.kv_tokens, session.aside_room
    assert room >= session._worker.context.aside  # the cells beyond the story's n_ctx
    text, result = await run(session, aside, replace(tell, aside=True))
    assert text == expected_aside and result.evaluated_tokens == len(request)  # the request alone read
    assert session.kv_tokens == held and session.aside_room == room and kv_is_consistent(session)
    text, result = await run(session, story, tell)  # the story goes on from its KV, untouched
    # Read ahead to its end: nothing is read again, its last logits were kept through the aside.
    assert result.evaluated_tokens == 0 and text == expected_story

    # Cancelled, or too long for the room aside: the story is as it was all the same. (Read ahead
    # after a reply, the prompt's last token is read alone: a batch of one sums in another order
    # than the whole prompt's batch, so the story is compared with the same reading, without aside.)
    await run(session, story, GenerationParams(max_tokens=0, heal=False))
    expected_story = (await run(session, story, tell))[0]
    await run(session, story, GenerationParams(max_tokens=0, heal=False))
    held = session.kv_tokens
    generation = session.generate(aside, replace(tell, aside=True, max_tokens=200))
    async for _piece in generation:
        generation.cancel()
    assert (await generation.result()).stop_reason == "cancelled"
    assert session.kv_tokens == held and session.aside_room == room and kv_is_consistent(session)
    text, result = await run(session, story, tell)  # an aside stopped midway leaves llama.cpp no logits row:
    assert result.evaluated_tokens == 0 and text == expected_story  # drawn from the story's kept copy
    long_story = Prompt.of(pinned, [*lines * 10, draft])
    await run(session, long_story, GenerationParams(max_tokens=0))
    held, room = session.kv_tokens, session.aside_room
    other = Prompt.plain(story_prompt(session, "Another tale. " * ((session.n_ctx - 200) // 3)))  # shares nothing
    cells = session._worker.context.cells
    assert len(other) < session.n_ctx and len(other) + tell.max_tokens > cells - len(held)  # a window, not the room
    problems = problems_mark()
    _text, result = await run(session, other, replace(tell, aside=True))
    assert result.stop_reason == "context_full" and not result.tokens and not result.evaluated_tokens
    assert problems_mark() == problems  # refused before llama.cpp was asked (it would log no room)
    assert session.kv_tokens == held and session.aside_room == room and kv_is_consistent(session)


async def test_memory_is_handed_back_only_once_no_generation_runs(
    session: LlamaSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second after the last generation ends, the memory the grammar sampler freed goes back; a
    generation's end heard while the next one runs (the loop may hear of it late) sets off nothing,
    so no trim waits on the engine thread to run just before a player's turn."""
    import simularity_tui.engine.session as engine_session

    trims: list[float] = []
    monkeypatch.setattr(engine_session, "release_freed_memory", lambda: trims.append(time.perf_counter()))
    prompt = story_prompt(session, "The lamp turns over the sea.")
    quick = GenerationParams(sampling=GREEDY, max_tokens=2)
    await run(session, prompt, quick)
    await asyncio.sleep(engine_session.IDLE_BEFORE_TRIM_S + 0.3)
    assert len(trims) == 1  # idle a second: handed back
    await session.reset()
    first = session.generate(prompt, quick)
    long = session.generate(story_prompt(session, "The lamp turns. " * 300), quick)  # seconds of reading
    await first.result()  # its end, heard while the long one runs
    await asyncio.sleep(engine_session.IDLE_BEFORE_TRIM_S + 0.1)
    if long._result.done():
        pytest.skip("this machine read 1,200 tokens within a second: no trim can come due behind them")
    turn = session.generate(prompt, quick)  # queued behind it, as a player's line behind a summary
    await long.result()
    await turn.result()
    assert len(trims) == 1  # nothing ran between them


@pytest.mark.model  # llama.cpp's bindings load with the engine's session module
async def test_the_engine_goes_on_only_once_the_first_piece_was_taken() -> None:
    """On two cores the engine's threads busy both as it decodes on, and the event loop would wait
    a scheduler's time slice before the line's first text could show: the first piece is handed
    over first. The others are not waited for, and nor is a consumer that never comes."""
    from simularity_tui.engine.session import FIRST_PIECE_WAIT_S, Generation

    loop = asyncio.get_running_loop()
    generation = Generation(loop)
    taken: list[str] = []
    seen_by_the_engine: list[list[str]] = []

    def engine() -> None:
        for piece in ("Mira", " nods", "."):
            generation._emit(piece)
            seen_by_the_engine.append(list(taken))

    pieces = generation.__aiter__()
    running = loop.run_in_executor(None, engine)
    for _piece in range(3):
        taken.append(await anext(pieces))
    await running
    assert seen_by_the_engine[0] == ["Mira"]  # the first: in the consumer's hands before it went on
    assert len(seen_by_the_engine[1]) < 3  # the next ones: sent without waiting

    # An event loop busy elsewhere (here: asleep for 0.3 s) is not waited for past a short while.
    busy = Generation(loop)
    waited: list[float] = []

    def engine_alone() -> None:
        started = time.perf_counter()
        busy._emit("Mira")
        waited.append(time.perf_counter() - started)

    thread = threading.Thread(target=engine_alone)
    thread.start()
    time.sleep(0.3)  # the loop does nothing else meanwhile
    thread.join()
    assert FIRST_PIECE_WAIT_S <= waited[0] < 0.3
