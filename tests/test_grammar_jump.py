"""Jump-forward decoding: what a grammar forces is appended without sampling. The automaton on the
grammars the story writes (pure), then the engine on the real model: lines and stage lines under
their grammars, the KV's token list exact, forced ends left to the next prompt."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import pytest

from simularity_tui.bench.script import BENCH_SAMPLING
from simularity_tui.engine import GenerationParams, Prompt, SamplingParams
from simularity_tui.engine.grammar_jump import GrammarJumps
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story.stage import Stage
from simularity_tui.story.summary import SUMMARY_GRAMMAR
from simularity_tui.story.writing import directions_grammar, line_grammar

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

GREEDY = SamplingParams(temperature=0.0)  # with the default repetition penalty, which runs before the pick


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def jumps(grammar: str, written: str = "") -> GrammarJumps:
    automaton = GrammarJumps.of(grammar)
    assert automaton is not None
    automaton.feed(written)
    return automaton


def test_a_line_head_is_forced_between_the_models_choices(lighthouse: LoadedPack) -> None:
    grammar = line_grammar(lighthouse.pack, ["mira", "pip", "narrator"], "20:05")
    assert jumps(grammar).forced() == ("", False)  # who speaks: the model's choice
    assert jumps(grammar, "Mi").forced() == ("ra (", False)  # the rest of the name, and " ("
    assert jumps(grammar, "Mira (2").forced() == ("", False)  # the hour's second digit: a choice
    gemma_like = GrammarJumps.of(grammar, digits_alone=True)  # a vocabulary with a token per digit
    assert gemma_like is not None
    gemma_like.feed("Mi")
    assert gemma_like.forced() == ("ra (2", False)  # every hour begins with 2: no token it could join
    assert jumps(grammar, "Mira (20").forced() == (":", False)
    assert jumps(grammar, "Mira (20:07").forced() == ("):", False)  # not the space: " The" is one token
    assert jumps(grammar, "Mira (20:07): The lamp").forced() == ("", False)
    assert jumps(line_grammar(lighthouse.pack, ["mira"], "20:05")).forced() == ("Mira (", False)


def test_a_stage_line_ends_without_sampling_its_end(lighthouse: LoadedPack) -> None:
    grammar, table = directions_grammar(lighthouse.pack, Stage.opening(lighthouse.pack, "storm"))
    assert len(table) > 2
    assert jumps(grammar).forced() == ("", False)  # " none" or a command: the model's
    assert jumps(grammar, " none").forced() == ("]\n", True)  # then the grammar is complete
    command = next(iter(table))
    assert jumps(grammar, f" {command}").forced() == ("", False)  # "; " or "]": a choice
    assert jumps(grammar, f" {command[:-1]}").forced() == (command[-1], False)  # the rest of a word begun


@pytest.mark.parametrize(
    "grammar",
    [
        'root ::= line\nline ::= "la " line\n',  # recursive: not regular as written
        "root ::= [\\x41-\\x5a]\n",  # escapes the story never writes
        "root ::= what\n",  # an unknown rule
        'root ::= "open\n',
    ],
)
def test_a_grammar_outside_the_subset_gets_no_jumps(grammar: str) -> None:
    assert GrammarJumps.of(grammar) is None


def test_a_summary_has_nothing_to_force() -> None:
    assert jumps(SUMMARY_GRAMMAR).forced() == ("", False)
    assert jumps(SUMMARY_GRAMMAR, "Ash came in.").forced() == ("", False)


def test_leaves_spell_out_what_a_token_may_start_with(lighthouse: LoadedPack) -> None:
    grammar = line_grammar(lighthouse.pack, ["mira", "pip", "narrator"], "20:05")
    assert sorted(jumps(grammar).leaves() or []) == ["Mir", "Nar", "Pip"]
    digits = jumps(grammar, "Mira (2").leaves()
    assert digits is not None and sorted({leaf[0] for leaf in digits}) == ["0", "1", "2"]
    assert all(leaf[1] == ":" and leaf[2] in "012345" for leaf in digits)
    assert jumps(grammar, "Mira (20:07):").leaves() == [" "]
    assert jumps(grammar, "Mira (20:07): ").leaves() is None  # any text: nothing to narrow
    stage, _table = directions_grammar(lighthouse.pack, Stage.opening(lighthouse.pack, "storm"))
    assert jumps(stage, " none]").leaves() == ["\n"]  # it ends there: nothing after the newline
    assert jumps(stage, " none]\n").leaves() is None  # complete: the end of generation is admitted
    assert jumps(stage).leaves(limit=2) == [" "]  # more texts than the limit: spelled out less far
    assert all(leaf.startswith(" ") for leaf in jumps(stage).leaves() or ["x"])


def test_text_off_the_grammar_stops_the_jumps(lighthouse: LoadedPack) -> None:
    automaton = jumps(line_grammar(lighthouse.pack, ["mira"], "20:05"), "Zed")
    assert automaton.lost


async def run(session: LlamaSession, prompt: Prompt, params: GenerationParams):  # type: ignore[no-untyped-def]
    generation = session.generate(prompt, params)
    text = "".join([piece async for piece in generation])
    return text, await generation.result()


async def test_lines_and_stage_lines_stay_exact_with_jumps(session: LlamaSession, lighthouse: LoadedPack) -> None:
    await session.reset()
    pinned = [session.bos_token, *session.tokenize("The Lighthouse at Gull Point. Mira keeps the lamp.\n\nStory:\n")]
    said = session.tokenize("Ash (20:05): Is the lamp lit?\n")
    grammar = line_grammar(lighthouse.pack, ["mira"], "20:05")  # one speaker: her whole head is forced
    text, result = await run(
        session, Prompt.of(pinned, [said]), GenerationParams(sampling=GREEDY, max_tokens=24, grammar=grammar)
    )
    assert re.match(r"Mira \(2[012]:[0-5]\d\): \S", text)
    assert session.detokenize(result.tokens) == text  # every token, sampled or forced, is in the reply
    held = list(session.kv_tokens)
    assert held == [*pinned, *said, *result.tokens][: len(held)] and len(held) >= len(pinned) + len(said)
    stage, table = directions_grammar(lighthouse.pack, Stage.opening(lighthouse.pack, "storm"))
    opened = session.tokenize("[stage:")
    written, staged = await run(
        session, Prompt.of(pinned, [said + opened]), GenerationParams(sampling=GREEDY, max_tokens=24, grammar=stage)
    )
    assert written.endswith("]\n") and staged.stop_reason == "eos"
    assert session.detokenize(staged.tokens) == written
    # The forced end was not read yet: the next prompt reads it with its own tokens.
    assert list(session.kv_tokens) == [*pinned, *said, *opened, *staged.tokens][: len(session.kv_tokens)]
    assert len(session.kv_tokens) < len(pinned) + len(said) + len(opened) + len(staged.tokens)


REFUSED_AT = [
    ("", "line"),  # who speaks
    ("Mira (2", "line"),  # the hour's second digit
    ("Mira (20:07):", "line"),  # the space before the text
    ("Mira (20:07): The", "line"),  # free text: the likeliest tokens, not the automaton, narrow it
    (" Pip:", "stage"),  # an expression
]


async def test_a_refused_draw_asks_the_grammar_about_few_tokens_and_draws_the_same(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """Where the grammar refuses the first draw, the sampler asks it about the tokens that may be
    admitted (automaton) or the likeliest few hundred, not the whole vocabulary: ~25 ms a draw on
    262k tokens. The token drawn is the one the whole-vocabulary pass draws, seed for seed."""
    import llama_cpp as C
    import numpy as np

    from simularity_tui.engine.sampling import SamplerChain

    await session.reset()
    pinned = [session.bos_token, *session.tokenize("The Lighthouse at Gull Point. Mira keeps the lamp.\n\nStory:\n")]
    said = session.tokenize("Ash (20:05): Is the lamp lit?\n[stage: none]\n")
    await run(session, Prompt.of(pinned, [said]), GenerationParams(sampling=GREEDY, max_tokens=0))
    worker = session._worker
    line = line_grammar(lighthouse.pack, ["mira", "pip", "narrator"], "20:05")
    stage, _table = directions_grammar(lighthouse.pack, Stage.opening(lighthouse.pack, "storm"))

    def compare() -> list[str]:
        logits = np.ctypeslib.as_array(
            C.llama_get_logits_ith(worker.context.ptr, -1), shape=(worker.model.n_vocab,)
        ).copy()
        paths, sizes = [], []
        for written, which in REFUSED_AT:
            grammar = line if which == "line" else stage
            for sampling in (BENCH_SAMPLING, GREEDY):
                for seed in range(6):
                    whole, narrow = (SamplerChain(worker.model, sampling, seed, grammar=grammar) for _ in "ab")
                    automaton = GrammarJumps.of(grammar, digits_alone=worker._digits_alone)
                    assert automaton is not None
                    for token in worker.model.tokenize(written):
                        whole.accept(token)
                        narrow.accept(token)
                    automaton.feed(written)
                    first = whole._draw(logits, None, with_grammar=False)  # the draw the grammar is asked about
                    assert narrow._draw(logits, None, with_grammar=False) == first
                    wanted = whole._draw(logits, None, with_grammar=True)
                    if narrow.top_k or automaton.leaves() is not None:  # greedy after penalties: the whole pass
                        narrow._draw = lambda *args, **kwargs: pytest.fail("the whole vocabulary was checked")  # type: ignore[method-assign]
                    decided_on = []  # the size of the candidate set that gave the draw
                    among = narrow._draw_among

                    def recorded(logits: np.ndarray, ids: np.ndarray, *, enough: int) -> int | None:
                        token = among(logits, ids, enough=enough)  # noqa: B023 (called in this iteration)
                        decided_on.extend([len(ids)] if token is not None else [])  # noqa: B023
                        return token

                    narrow._draw_among = recorded  # type: ignore[method-assign]
                    drawn = narrow._draw_admitted(logits, None, worker._admissible(automaton), refused=first)
                    assert drawn == wanted, (written, seed, sampling.temperature)
                    sizes.append(decided_on[0] if decided_on else worker.model.n_vocab)  # else: the whole pass
                    whole.close()
                    narrow.close()
            paths.append("automaton" if automaton.leaves() is not None else "likeliest")
        return paths, sizes

    paths, sizes = await asyncio.get_running_loop().run_in_executor(session._executor, compare)
    assert paths == ["automaton", "automaton", "automaton", "likeliest", "automaton"]
    # Where the automaton admits thousands (any word after the head's space) or cannot tell (free
    # text), the tokens near the likeliest decide: a few hundred, not the likeliest 1,024.
    # (Greedy after a repetition penalty checks the whole vocabulary there.)
    per_state = len(sizes) // len(REFUSED_AT)
    sampled = [sizes[state * per_state : state * per_state + per_state // 2] for state in (2, 3)]
    assert max(sampled[0] + sampled[1]) < 1024, sizes
