"""Estimated token counts for a chat API without a tokenizer (engine/remote/pieces.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simularity_tui.engine.remote.pieces import PieceTokenizer


@given(st.text())
def test_any_text_comes_back_exactly_and_every_id_fits_a_saves_integers(text: str) -> None:
    pieces = PieceTokenizer()
    tokens = pieces.tokenize(text)
    assert pieces.detokenize(tokens) == text
    assert all(0 < token < 2**63 for token in tokens)
    assert pieces.tokenize(text) == tokens  # no state: a save's ids hold for the next session


def test_counts_err_long_against_a_real_tokenizer_on_english() -> None:
    """About 4 characters a piece: the embedded Gemma 3 makes 25 tokens of this line, the pieces 32."""
    line = "Mira (21:40): The lamp has burned every night since the keeper left, and the storm is worse."
    assert 25 <= len(PieceTokenizer().tokenize(line)) <= 40


def test_a_token_of_another_tokenizer_reads_as_a_replacement_character() -> None:
    assert PieceTokenizer().detokenize([2, -5, 1 << 62]) == "\ufffd" * 3
