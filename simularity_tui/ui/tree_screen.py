"""The story tree (Ctrl+B): every line, its variants and branches, who spoke and when.

Enter goes to the highlighted line (the story becomes the path to it: the engine reads again only
from where the paths part); C compares it with the variant in play, side by side; B saves a new
game whose story ends there (a branch); D twice deletes it and everything after it.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, Tree
from textual.widgets.tree import TreeNode

from ..errors import UserFacingError
from ..story import SavedGame
from ..story.saves import SaveExists, copy_name
from ..story.tree import Line
from ..untrusted_text import printable
from .notify import notify_plain


class TreeScreen(Screen[int | None]):
    """Dismissed with the line to go to, or None."""

    BINDINGS = [
        Binding("escape", "dismiss", "Back"),
        Binding("c", "compare", "Compare with the line in play"),
        Binding("b", "branch", "Save a branch from here"),
        Binding("d", "delete", "Delete from here (twice)"),
    ]

    def __init__(self, saved: SavedGame) -> None:
        super().__init__()
        self.saved = saved
        self._doomed: int | None = None  # the line D was pressed on once
        self.compared: tuple[int, int] | None = None  # (highlighted, in play), shown side by side

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="tree-area"):
            yield Tree(Text("The story"), id="story-tree")
            yield Static(id="tree-compare")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "The story tree"
        self._fill()
        self.query_one(Tree).focus()

    def _fill(self) -> None:
        """The whole tree, the path in play open, the head highlighted. A run of lines without
        variants reads as a list, one after the other; only where a line has variants do they
        nest, each with the lines that follow it (so a long story is not 200 levels deep)."""
        widget = self.query_one(Tree)
        widget.clear()
        tree = self.saved.game.tree
        on_path = {node.id for node in tree.path()}
        head: TreeNode[int] | None = None
        # (where the next lines go, the node whose followers they are, that node's own item)
        stack: list[tuple[TreeNode[int], int, TreeNode[int]]] = [(widget.root, 0, widget.root)]
        while stack:
            container, node_id, node_item = stack.pop()
            children = tree.nodes[node_id].children
            for index, child_id in enumerate(children):
                line = tree.nodes[child_id].line
                assert line is not None
                label = self._label(line, index, len(children), chosen=child_id in on_path)
                forked = len(children) > 1
                place = node_item if forked else container
                followed = forked and bool(tree.nodes[child_id].children)  # its own lines nest under it
                item = place.add(label, data=child_id, expand=child_id in on_path, allow_expand=followed)
                if forked:
                    node_item.allow_expand = True
                if child_id == tree.head:
                    head = item
                stack.append((item if forked else container, child_id, item))
        widget.root.expand()
        if head is not None:
            self.call_after_refresh(widget.move_cursor, head)  # once the tree has laid out its lines

    def _label(self, line: Line, index: int, count: int, *, chosen: bool) -> Text:
        pack = self.saved.game.pack
        text = Text(no_wrap=True)
        text.append(printable(pack.speaker_name(line.speaker)), style="bold" if chosen else "")
        text.append(f" ({line.clock}) ", style="dim")
        text.append(printable(" ".join(line.text.split()))[:90])
        if count > 1:
            text.append(f"  [{index + 1}/{count}]", style="dim italic")
        return text

    def _selected(self) -> int | None:
        node = self.query_one(Tree).cursor_node
        return node.data if node is not None else None

    def on_tree_node_selected(self, event: Tree.NodeSelected[int]) -> None:
        if event.node.data is not None:
            self.dismiss(event.node.data)

    def action_compare(self) -> None:
        """The highlighted line beside the variant in play at the same place."""
        node_id = self._selected()
        if node_id is None:
            return
        tree, pack = self.saved.game.tree, self.saved.game.pack
        parent = tree.nodes[tree.nodes[node_id].parent or 0]
        in_play = parent.children[parent.chosen]
        table = Table(expand=True, show_lines=False)
        for title, nid in (("highlighted", node_id), ("in play", in_play)):
            line = tree.nodes[nid].line
            assert line is not None
            table.add_column(f"{title}: {printable(pack.speaker_name(line.speaker))} ({line.clock})", ratio=1)
        texts = [tree.nodes[nid].line.text for nid in (node_id, in_play)]  # type: ignore[union-attr]
        table.add_row(*(Text(printable(text)) for text in texts))
        self.query_one("#tree-compare", Static).update(table)
        self.compared = (node_id, in_play)

    def action_branch(self) -> None:
        node_id = self._selected()
        if node_id is None:
            return
        name = copy_name(self.saved.game.pack.id, self.saved.path.stem)
        try:
            self.saved.save_branch(name, node_id)
        except (SaveExists, UserFacingError) as error:
            notify_plain(self, error.render(), title="Not saved", severity="error")
            return
        notify_plain(self, f"A new save, '{name}', ends at this line.", title="Branch saved")

    def action_delete(self) -> None:
        node_id = self._selected()
        if node_id is None:
            return
        if self._doomed != node_id:
            self._doomed = node_id
            notify_plain(self, "Press D again to delete this line and everything after it.", title="Delete?")
            return
        self._doomed = None
        gone = self.saved.game.delete_branch(node_id)
        notify_plain(self, f"Deleted {gone} line{'s' if gone != 1 else ''}.", title="Deleted")
        self._fill()
