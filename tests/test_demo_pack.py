"""The bundled demo pack loads, and the story built on it reads and writes exact tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from simularity_tui.engine import LlamaSession, SamplingParams
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import bundled_packs_dir, discover_packs, load_pack
from simularity_tui.story import Playthrough


def test_the_demo_pack_is_bundled_and_valid() -> None:
    packs, problems = discover_packs(bundled_packs_dir())
    assert problems == []
    demo = next(p for p in packs if p.root.name == "demo")
    assert demo.pack.player.name == "Ash" and "storm" in demo.pack.episodes


def test_a_pack_with_a_typo_is_reported_at_its_line(tmp_path: Path) -> None:
    pack = tmp_path / "broken"
    pack.mkdir()
    source = (bundled_packs_dir() / "demo" / "scenario.toml").read_text()
    (pack / "scenario.toml").write_text(source.replace('color = "#ffb86b"', 'colour = "#ffb86b"'))
    line = source.splitlines().index('color = "#ffb86b"') + 1
    with pytest.raises(
        UserFacingError, match=rf"scenario.toml:{line}:1: unknown key 'characters.mira.colour'; did you mean 'color'\?"
    ):
        load_pack(pack)


async def test_turns_append_exact_tokens_and_reuse_the_kv(session: LlamaSession) -> None:
    playthrough = Playthrough(
        session, load_pack(bundled_packs_dir() / "demo"), "storm", sampling=SamplingParams(seed=11)
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
