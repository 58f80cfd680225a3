"""Facts of the story up to each line, remembered per line: the stage after it, and whether the
lines up to it mention some words (achievements.py).

A turn asks for the stage several times, and every line's commit asks the achievements whether any
line so far says their words: worked out from the first line each time, that grew with the story
(about 5 ms more before a turn's first token at line 600). A line's facts follow from its parent's
and its own line, so each is worked out once, from the nearest line already known. They hold for
one tree, pack and episode, and until a line is edited in place (`StoryTree.edits`); the game
makes new ones when any of these changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..scenario.schema import Pack
from .achievements import Mentions, mentions
from .stage import Stage
from .tree import Line, Node, StoryTree

T = TypeVar("T")


class PathFacts:
    def __init__(self, tree: StoryTree, pack: Pack, episode: str) -> None:
        self._tree = tree
        self._edits = tree.edits
        self._pack = pack
        self._episode = episode
        self._stages: dict[int, Stage] = {}
        self._said: dict[tuple[tuple[str, ...], str | None], dict[int, bool]] = {}

    def forked(self, tree: StoryTree) -> PathFacts:
        """The same facts for `tree`, a copy of this tree (StoryTree.copy) that will go its own way:
        the nodes they share are the same lines. What either learns next stays its own (both may
        give a new line the same id)."""
        fork = PathFacts(tree, self._pack, self._episode)
        fork._stages = dict(self._stages)  # (copies made in one step each: a thread may be forking)
        fork._said = {key: dict(known) for key, known in list(self._said.items())}
        return fork

    def hold_for(self, tree: StoryTree, pack: Pack, episode: str) -> bool:
        return tree is self._tree and tree.edits == self._edits and pack is self._pack and episode == self._episode

    def stage_after(self, node_id: int) -> Stage:
        """The stage after the line `node_id` (the root: the episode's opening). A command the pack no
        longer allows (edited since the line was written) is passed over."""

        def step(stage: Stage, line: Line) -> Stage:
            for command in line.directions:
                if stage.is_legal(self._pack, command):
                    stage = stage.apply(self._pack, command)
            return stage

        return self._fold(node_id, self._stages, lambda: Stage.opening(self._pack, self._episode), step)

    def said(self, node_id: int, words: tuple[str, ...], seen: Mentions, *, by: str | None = None) -> bool:
        """Whether a line up to `node_id` (spoken by `by`, when given) mentions one of `words`."""

        def step(found: bool, line: Line) -> bool:
            return found or ((by is None or line.speaker == by) and mentions(line.text, words, seen))

        return self._fold(node_id, self._said.setdefault((words, by), {}), lambda: False, step)

    def _fold(self, node_id: int, known: dict[int, T], first: Callable[[], T], step: Callable[[T, Line], T]) -> T:
        """The fact at `node_id`, from the nearest node back along its path whose fact is `known`
        (or `first`, at the root), stepped through each line after it; each is remembered."""
        nodes = self._tree.nodes
        unknown: list[Node] = []
        at: int | None = node_id
        while at is not None and at not in known:
            unknown.append(nodes[at])
            at = nodes[at].parent
        fact = first() if at is None else known[at]
        for node in reversed(unknown):
            if node.line is not None:
                fact = step(fact, node.line)
            known[node.id] = fact
        return fact
