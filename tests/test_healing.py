"""Token healing: a prompt that ends mid-word is completed as the whole word, at the cost of one
constrained step."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import GenerationParams, SamplingParams

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)


async def complete(session: LlamaSession, text: str, *, heal: bool, grammar: str | None = None):  # type: ignore[no-untyped-def]
    prompt = [session.bos_token, *session.tokenize(text)]
    generation = session.generate(prompt, GenerationParams(sampling=GREEDY, max_tokens=8, heal=heal, grammar=grammar))
    streamed = "".join([piece async for piece in generation])
    return streamed, await generation.result(), prompt


async def test_half_a_word_is_completed_as_the_whole_word(session: LlamaSession) -> None:
    text, result, prompt = await complete(session, "The capital city of France is Par", heal=True)
    assert result.healed_tokens == 1 and session.detokenize(prompt[-1:]) == " Par"
    assert text.startswith("is"), text  # Par|is
    assert session.detokenize(result.tokens).startswith(" Paris")  # the reply's tokens re-write " Par"
    assert result.healing_steps == 1  # the constraint cost one sampling step, not the generation
    unhealed, plain, _ = await complete(session, "The capital city of France is Par", heal=False)
    assert not unhealed.startswith("is") and plain.healed_tokens == 0 and plain.healing_steps == 0


async def test_a_word_cut_before_its_end_keeps_its_meaning(session: LlamaSession) -> None:
    text, result, _ = await complete(session, "She looked up at the snowy mount", heal=True)
    assert text.startswith("ains"), text  # mount|ains, not "mountaintops"
    assert result.healing_steps == 1


async def test_no_healing_under_a_grammar_or_after_a_control_token(session: LlamaSession) -> None:
    _, result, _ = await complete(session, "Yes or no?", heal=True, grammar='root ::= " yes" | " no"')
    assert result.healed_tokens == 0
    generation = session.generate([session.bos_token], GenerationParams(sampling=GREEDY, max_tokens=3))
    async for _piece in generation:
        pass
    assert (await generation.result()).healed_tokens == 0


def test_the_allowed_tokens_start_with_the_removed_text_or_begin_it(session: LlamaSession) -> None:
    from simularity_tui.engine.healing import Healing, PieceIndex  # llama.cpp: not at collection

    model = session._worker.model
    index = PieceIndex.build(model)
    assert index is not None
    allowed = {int(t) for t in index.consistent_with(b" Par")}
    assert len(allowed) == len(index.consistent_with(b" Par"))  # each token once
    pieces = {model.piece(t) for t in allowed}
    assert {b" Paris", b" Par", b" P", b" Pa"} <= pieces
    assert all(p.startswith(b" Par") or b" Par".startswith(p) for p in pieces)
    assert all(model.piece(t) != b" Pe" for t in allowed)
    healing = Healing(b" Par")
    healing.accept(b" Pa")
    assert healing.active and healing.remaining == b"r"
    healing.accept(b"ris")
    assert not healing.active


class StopAfter(threading.Event):
    """A stop that is set once it has been looked at `looks` times."""

    def __init__(self, looks: int) -> None:
        super().__init__()
        self.looks, self.looked = looks, 0

    def is_set(self) -> bool:
        self.looked += 1
        return self.looked > self.looks


async def test_building_the_index_on_the_engine_thread_leaves_the_event_loop_free(session: LlamaSession) -> None:
    """The index is built on the engine thread in the first idle time, while the screen runs: it
    must hand the GIL over often (one `sorted` over 262k pieces held it ~0.2 s)."""
    from simularity_tui.engine.healing import PieceIndex  # llama.cpp: not at collection

    model = session._worker.model
    built: list[PieceIndex | None] = []
    builder = threading.Thread(target=lambda: built.append(PieceIndex.build(model)))
    gaps: list[float] = []
    builder.start()
    last = time.perf_counter()
    while builder.is_alive():
        await asyncio.sleep(0.002)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    builder.join()
    index = built[0]
    assert index is not None and len(gaps) > 20
    print(f"longest wait of the event loop while the index was built: {max(gaps) * 1000:.1f} ms")
    assert max(gaps) < 0.030, f"the event loop waited {max(gaps) * 1000:.0f} ms"
    # Stopped in any phase (reading the pieces, sorting the runs, merging them), it stops there.
    for looks in (10, 64 + 10, 128 + 10):  # each phase looks at `stop` 64 times (262,144 tokens / 4,096)
        stop = StopAfter(looks)
        assert PieceIndex.build(model, stop) is None
        assert stop.looked == looks + 1
    # The same index as one sort of every token's piece (ties by token id; empty pieces left out).
    pieces = [model.piece(token) for token in range(model.n_vocab)]
    order = [token for token in sorted(range(len(pieces)), key=pieces.__getitem__) if pieces[token]]
    assert index._ids.tolist() == order and index._sorted == [pieces[token] for token in order]


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("Chapter One\n", {"stop": ["\n"], "max_tokens": 6}),  # the first token "\n\n" runs into the stop
        ('He said: "Go."', {"max_tokens": 1}),  # one token re-writes only "." of '."'
        ('He said: "Go."', {"max_tokens": 5, "cancel": True}),  # cancelled before any token
    ],
)
async def test_a_reply_that_never_rewrites_the_healed_text_gives_it_back(
    session: LlamaSession, text: str, options: dict
) -> None:
    prompt = [session.bos_token, *session.tokenize(text)]
    cancel = options.pop("cancel", False)
    generation = session.generate(prompt, GenerationParams(sampling=GREEDY, **options))
    if cancel:
        generation.cancel()
    streamed = "".join([piece async for piece in generation])
    result = await generation.result()
    # The caller's rule: keep the prompt minus the healed tokens, then the reply's tokens and tail.
    rebuilt = session.detokenize(prompt[: len(prompt) - result.healed_tokens] + list(result.tokens)) + result.tail_text
    assert rebuilt.startswith(text) and rebuilt == text + streamed
