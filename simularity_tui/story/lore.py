"""Lore entries that join the prompt when a recent line mentions one of their keywords."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..scenario.schema import Pack
from .achievements import mentions

RECENT_LINES = 4


def triggered(pack: Pack, recent: Sequence[str], present: Iterable[str]) -> list[str]:
    """Keyword entries mentioned in `recent` lines that are not `present` in the window already."""
    present = set(present)
    return [
        lid
        for lid, entry in pack.lore.items()
        if entry.enabled and not entry.always and lid not in present
        and any(mentions(text, entry.keywords) for text in recent[-RECENT_LINES:])
    ]  # fmt: skip
