"""Achievements: conditions from the pack, evaluated on the story after each line."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from ..scenario.schema import Condition, Pack
from .stage import Stage

# Whether a line's text mentions a word list, by (text, words): a line's text is searched once for
# each list, however often it is asked (variants and edits bring the same texts back). The game
# keeps one, for its own lines.
Mentions = dict[tuple[str, tuple[str, ...]], bool]
# Whether a line so far (said by the character given, if one is) mentions one of the words: the
# game answers from what it worked out for the line before (path_facts.py).
Said = Callable[[tuple[str, ...], str | None], bool]


def holds(condition: Condition, pack: Pack, stage: Stage, said: Said, lines: int) -> bool:
    """Whether `condition` holds on `stage`, after `lines` lines of which `said` tells."""
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
        return said(words, player)
    if kind == "mentioned":
        return said(tuple(condition.mentioned or ()), None)
    if kind == "turns":
        return lines >= (condition.turns or 0)
    if kind == "all":
        return all(holds(inner, pack, stage, said, lines) for inner in condition.all or [])
    return any(holds(inner, pack, stage, said, lines) for inner in condition.any or [])


def mentions(text: str, words: tuple[str, ...], seen: Mentions) -> bool:
    """Whether `text` contains one of `words` as a whole word (or phrase), ignoring case."""
    found = seen.get((text, words))
    if found is None:
        found = seen[text, words] = _words_pattern(words).search(text) is not None
    return found


@functools.lru_cache(maxsize=256)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    either = "|".join(re.escape(word) for word in words) or "(?!)"  # no words: nothing matches
    return re.compile(rf"(?<!\w)(?:{either})(?!\w)", re.IGNORECASE)


def newly_unlocked(pack: Pack, stage: Stage, said: Said, lines: int, unlocked: dict[str, int]) -> list[str]:
    return [
        aid
        for aid, achievement in pack.achievements.items()
        if aid not in unlocked and holds(achievement.condition, pack, stage, said, lines)
    ]
