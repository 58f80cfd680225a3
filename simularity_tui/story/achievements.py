"""Achievements: conditions from the pack, evaluated on the story after each line."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ..scenario.schema import Condition, Pack
from .stage import Stage
from .tree import Line

# Whether a line's text mentions a word list, by (text, words): every line is looked at again after
# each new one (a condition may join an old line to the stage now), so a long story costs a lookup
# per line, not a search. The game keeps one, for its own lines.
Mentions = dict[tuple[str, tuple[str, ...]], bool]


def holds(condition: Condition, pack: Pack, stage: Stage, lines: Sequence[Line], seen: Mentions) -> bool:
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
        return any(line.speaker == player and _mentions(line.text, words, seen) for line in lines)
    if kind == "mentioned":
        words = tuple(condition.mentioned or ())
        return any(_mentions(line.text, words, seen) for line in lines)
    if kind == "turns":
        return len(lines) >= (condition.turns or 0)
    if kind == "all":
        return all(holds(inner, pack, stage, lines, seen) for inner in condition.all or [])
    return any(holds(inner, pack, stage, lines, seen) for inner in condition.any or [])


def _mentions(text: str, words: tuple[str, ...], seen: Mentions) -> bool:
    """Whether `text` contains one of `words` as a whole word (or phrase), ignoring case."""
    found = seen.get((text, words))
    if found is None:
        found = seen[text, words] = _words_pattern(words).search(text) is not None
    return found


@functools.lru_cache(maxsize=256)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    either = "|".join(re.escape(word) for word in words) or "(?!)"  # no words: nothing matches
    return re.compile(rf"(?<!\w)(?:{either})(?!\w)", re.IGNORECASE)


def newly_unlocked(
    pack: Pack, stage: Stage, lines: Sequence[Line], unlocked: dict[str, int], seen: Mentions
) -> list[str]:
    return [
        aid
        for aid, achievement in pack.achievements.items()
        if aid not in unlocked and holds(achievement.condition, pack, stage, lines, seen)
    ]
