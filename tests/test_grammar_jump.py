"""Jump-forward decoding: what a grammar forces is appended without sampling. The automaton on the
grammars the story writes (pure), then the engine on the real model: lines and stage lines under
their grammars, the KV's token list exact, forced ends left to the next prompt."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import GenerationParams, Prompt, SamplingParams
from simularity_tui.engine.grammar_jump import GrammarJumps
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story.stage import Stage
from simularity_tui.story.summary import SUMMARY_GRAMMAR
from simularity_tui.story.writing import directions_grammar, line_grammar

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

GREEDY = SamplingParams(temperature=0.0)


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
