"""The model's chat frame around a prompt's pinned part (engine/chat_template.py says why a story
is one system text and one assistant turn that is never closed)."""

from __future__ import annotations

from collections.abc import Sequence

from ..engine import ModelSession


def framed(session: ModelSession, inner: Sequence[int]) -> list[int]:
    """`inner` (the pinned block, a summary request) in the model's frame: the system turn's start
    before it, its end and the assistant turn's start after. The frame's texts are the template's
    own, so their control tokens (`<|im_start|>`) are read as such; a pack's or a player's text is
    always tokenized with `special=False`, so it can never open or close a turn in-process (a model
    server reads the prompt as text, and parses control tokens wherever the text spells one)."""
    frame = session.chat_frame
    opening = session.tokenize(frame.opening, special=True) if frame.opening else []
    closing = session.tokenize(frame.closing, special=True) if frame.closing else []
    return [*opening, *inner, *closing]
