"""Achievements: conditions from the pack, evaluated on the story after each line."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..scenario.schema import Condition, Pack
from .stage import Stage
from .tree import Line


def holds(condition: Condition, pack: Pack, stage: Stage, lines: Sequence[Line]) -> bool:
    kind = condition.kind
    if kind == "scene":
        return stage.scene == condition.scene
    if kind == "on_stage":
        return condition.on_stage in stage.cast
    if kind == "expression":
        look = stage.cast.get(str(condition.character))
        return look is not None and look.expression == condition.expression
    if kind == "player_says":
        return any(
            line.speaker == pack.player_id and mentions(line.text, condition.player_says or []) for line in lines
        )
    if kind == "mentioned":
        return any(mentions(line.text, condition.mentioned or []) for line in lines)
    if kind == "turns":
        return len(lines) >= (condition.turns or 0)
    if kind == "all":
        return all(holds(inner, pack, stage, lines) for inner in condition.all or [])
    return any(holds(inner, pack, stage, lines) for inner in condition.any or [])


def mentions(text: str, words: Sequence[str]) -> bool:
    """Whether `text` contains one of `words` as a whole word (or phrase), ignoring case."""
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) for word in words)


def newly_unlocked(pack: Pack, stage: Stage, lines: Sequence[Line], unlocked: dict[str, int]) -> list[str]:
    return [
        aid
        for aid, achievement in pack.achievements.items()
        if aid not in unlocked and holds(achievement.condition, pack, stage, lines)
    ]
