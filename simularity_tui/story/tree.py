"""The story as a tree: every line keeps its variants, and the story in play is one path.

Each node is a line. Its children are the variants of the line that follows it; `chosen` says
which one the story goes on with. `head` is the last line in play: undo moves it back, redo moves
it forward along the chosen variants, and nothing is ever thrown away. The root (id 0) holds no
line; the first line is one of its children.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .stage import StageCommand

LineKind = Literal["scripted", "player", "model", "narration"]


@dataclass(frozen=True)
class Line:
    speaker: str  # a character id, or NARRATOR (narration)
    text: str
    clock: str  # in-story time, HH:MM
    kind: LineKind
    tokens: tuple[int, ...]  # exactly what the model reads for this line (notes, stage line, line)
    directions: tuple[StageCommand, ...] = ()  # stage commands applied just before the line
    notes: tuple[str, ...] = ()  # lore entries this line brought into the prompt
    reminders: tuple[str, ...] = ()  # reminders (reminders.py) this line carried, after its notes
    seed: int | None = None  # the sampling seed of a model line


@dataclass
class Node:
    id: int
    parent: int | None
    line: Line | None
    children: list[int] = field(default_factory=list)
    chosen: int = 0  # index into children
    summary: tuple[int, str] | None = None  # (lines it covers from the start, text), written at this line


class StoryTree:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {0: Node(0, None, None)}
        self.head = 0
        self._next_id = 1
        # The last path asked for, by its end: a node's path never changes (nodes keep their parent,
        # ids are not reused, deleting a node deletes its branch), so the next path, a line or two
        # on, is found from it without walking a long story back to its start every time.
        self._last_path: tuple[int, list[Node]] = (0, [])
        self.edits = 0  # lines replaced in place so far: what was worked out from the old ones is stale
        self._lines: tuple[tuple[int, int], list[Line]] = ((0, 0), [])  # ((head, edits), its lines)

    # -- reading ------------------------------------------------------------------------------

    def path(self, until: int | None = None) -> list[Node]:
        """The nodes from the first line to `until` (default: the head), in order."""
        end = self.head if until is None else until
        known, known_path = self._last_path
        nodes = []
        node = self.nodes[end]
        while node.parent is not None and node.id != known:
            nodes.append(node)
            node = self.nodes[node.parent]
        found = (known_path if node.id == known and known in self.nodes else []) + nodes[::-1]
        self._last_path = (end, found)
        return list(found)

    def lines(self) -> list[Line]:
        """The lines in play (a list of the caller's own): a turn asks for them a dozen times, so
        they are kept until the head moves or a line is edited."""
        now = (self.head, self.edits)  # read once: a thread may look while the game moves on
        key, lines = self._lines
        if key != now:
            lines = [node.line for node in self.path(now[0]) if node.line is not None]
            self._lines = (now, lines)
        return list(lines)

    def variants(self, node_id: int) -> tuple[int, int]:
        """(index, count) of a line among its variants."""
        parent = self.nodes[self.nodes[node_id].parent or 0]
        return parent.children.index(node_id), len(parent.children)

    def forward(self) -> list[Node]:
        """The lines after the head along the chosen variants (what redo would bring back)."""
        ahead = []
        node = self.nodes[self.head]
        while node.children:
            node = self.nodes[node.children[node.chosen]]
            ahead.append(node)
        return ahead

    # -- changing -----------------------------------------------------------------------------

    def add(self, line: Line) -> Node:
        """A new line after the head (a new variant, if the head already had a next line)."""
        parent = self.nodes[self.head]
        node = Node(self._next_id, parent.id, line)
        self._next_id += 1
        self.nodes[node.id] = node
        parent.children.append(node.id)
        parent.chosen = len(parent.children) - 1
        self.head = node.id
        return node

    def undo(self) -> bool:
        node = self.nodes[self.head]
        if node.parent is None:
            return False
        self.head = node.parent
        return True

    def redo(self) -> bool:
        node = self.nodes[self.head]
        if not node.children:
            return False
        self.head = node.children[node.chosen]
        return True

    def jump(self, node_id: int) -> None:
        """Make `node_id` the head, every line on its way chosen (a jump anywhere in the tree)."""
        node = self.nodes[node_id]
        while node.parent is not None:
            parent = self.nodes[node.parent]
            parent.chosen = parent.children.index(node.id)
            node = parent
        self.head = node_id

    def delete(self, node_id: int) -> list[int]:
        """Delete the line `node_id` and everything after it (a branch); the head moves to its
        parent when it was in the branch. Returns the ids deleted."""
        node = self.nodes[node_id]
        if node.parent is None:
            raise ValueError("the root holds no line")
        doomed, stack = [], [node_id]
        while stack:
            current = stack.pop()
            doomed.append(current)
            stack.extend(self.nodes[current].children)
        on_path = {n.id for n in self.path()}
        parent = self.nodes[node.parent]
        parent.children.remove(node_id)
        parent.chosen = min(parent.chosen, max(0, len(parent.children) - 1))
        for gone in doomed:
            del self.nodes[gone]
        if self.head in doomed or node_id in on_path:
            self.head = parent.id
        return doomed

    def switch_variant(self, node_id: int, step: int) -> int:
        """Show another variant of a line; it becomes the head. Returns the new node's id."""
        parent = self.nodes[self.nodes[node_id].parent or 0]
        index = (parent.children.index(node_id) + step) % len(parent.children)
        parent.chosen = index
        self.head = parent.children[index]
        return self.head

    def edit(self, node_id: int, line: Line) -> None:
        """Replace a line in place (its text, or its tokens); the lines after it stay."""
        node = self.nodes[node_id]
        assert node.line is not None
        node.line = replace(line, seed=node.line.seed)
        self.edits += 1

    def summary_at(self, node_id: int | None = None) -> tuple[int, str] | None:
        """The newest summary written on the path to `node_id` (default: the head)."""
        for node in reversed(self.path(node_id)):
            if node.summary is not None:
                return node.summary
        return None

    def copy(self) -> StoryTree:
        """A tree that can change without changing this one (lines are immutable: shared)."""
        nodes = {nid: replace(node, children=list(node.children)) for nid, node in self.nodes.items()}
        copy = StoryTree.from_nodes(nodes, self.head)
        copy._next_id = self._next_id  # no id of a line deleted here comes back there (path_facts.py)
        return copy

    @classmethod
    def from_nodes(cls, nodes: dict[int, Node], head: int) -> StoryTree:
        tree = cls()
        tree.nodes = nodes
        tree.head = head
        tree._next_id = max(nodes) + 1
        return tree
