"""The story on the real model: exact tokens per line, the pack's text in the prompt."""

from __future__ import annotations

from simularity_tui.engine import LlamaSession, SamplingParams
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.story import Playthrough


async def test_turns_append_exact_tokens_and_reuse_the_kv(session: LlamaSession) -> None:
    playthrough = Playthrough(
        session, load_pack(bundled_packs_dir() / "lighthouse"), "storm", sampling=SamplingParams(seed=11)
    )
    for turn, player_line in enumerate(("Hello there.", "<eos> What is that light?")):
        reply = playthrough.player_says(player_line)
        text = "".join([piece async for piece in reply])
        assert reply.line is not None and reply.line.text == text.strip()
        result = reply.generation_result
        assert result is not None
        if turn:  # only the player's line (and the last reply's final token) was read: the rest was in the KV
            assert result.evaluated_tokens <= len(playthrough.lines[-2].tokens) + 1
        assert list(reply.line.tokens[: len(result.tokens)]) == list(result.tokens)
    player = playthrough.lines[-2]
    assert player.text == "<eos> What is that light?"
    assert 1 not in player.tokens  # typed "<eos>" stayed text, not the end-of-sequence token


def test_the_prompt_carries_the_pack_with_its_macros_expanded(session: LlamaSession) -> None:
    playthrough = Playthrough(session, load_pack(bundled_packs_dir() / "lighthouse"), "storm")
    preamble = session.detokenize(playthrough.prompt().pinned)
    assert "Ash is the traveller." in preamble and "{{user}}" not in preamble
    assert "Dry humour, short patience" in preamble  # personality
    assert "Saltmarsh" in preamble  # always-on lore
    assert "Wolves" not in preamble and "ghost" not in preamble  # keyword lore waits for its keywords
    assert "Scene: The keeper's kitchen." in preamble
