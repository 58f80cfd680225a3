"""Achievements: conditions from the pack, evaluated on the story after each line."""

from __future__ import annotations

import functools
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
        player, words = pack.player_id, tuple(condition.player_says or ())
        return any(line.speaker == player and _mentions(line.text, words) for line in lines)
    if kind == "mentioned":
        words = tuple(condition.mentioned or ())
        return any(_mentions(line.text, words) for line in lines)
    if kind == "turns":
        return len(lines) >= (condition.turns or 0)
    if kind == "all":
        return all(holds(inner, pack, stage, lines) for inner in condition.all or [])
    return any(holds(inner, pack, stage, lines) for inner in condition.any or [])


# Every line is looked at again after each new one (a condition may join an old line to the stage
# now): remembered by text, a long story costs a lookup per line, not a search.
@functools.lru_cache(maxsize=65536)
def _mentions(text: str, words: tuple[str, ...]) -> bool:
    """Whether `text` contains one of `words` as a whole word (or phrase), ignoring case."""
    return _words_pattern(words).search(text) is not None


@functools.lru_cache(maxsize=256)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    either = "|".join(re.escape(word) for word in words) or "(?!)"  # no words: nothing matches
    return re.compile(rf"(?<!\w)(?:{either})(?!\w)", re.IGNORECASE)


def newly_unlocked(pack: Pack, stage: Stage, lines: Sequence[Line], unlocked: dict[str, int]) -> list[str]:
    return [
        aid
        for aid, achievement in pack.achievements.items()
        if aid not in unlocked and holds(achievement.condition, pack, stage, lines)
    ]
