"""The prompt inspector, beside the story: what the model reads for the next line, part by part,
and the lore debugger (which entries each line brought in, on which key, and which were dropped).

It shows `Game.prompt_view()` — the same view `simularity prompt` prints — refreshed after each
line. Everything in it is pack or model text: shown as plain text, through `printable()`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ..story import Firing, LoreScan, PromptPart, PromptView
from ..untrusted_text import printable

_SECTION_TITLES = {"pinned": "Pinned block", "story": "The story", "open": "The next line"}


class PromptPanel(Vertical):
    """Two tabs: the prompt as the model reads it, and the lore each line brought in."""

    DEFAULT_CSS = """
    PromptPanel {
        width: 45%;
        min-width: 36;
        border-left: solid $panel;
        display: none;
    }
    PromptPanel.shown {
        display: block;
    }
    PromptPanel #prompt-totals {
        color: $text-muted;
        padding: 0 1;
        height: auto;
    }
    PromptPanel #prompt-parts {
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with TabbedContent(id="inspector-tabs"):
            with TabPane("Prompt", id="prompt-tab"):
                yield Static("", id="prompt-totals")
                with VerticalScroll(id="prompt-scroll"):
                    yield Static("", id="prompt-parts")
            with TabPane("Lore", id="lore-tab"):
                yield DataTable(id="lore-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#lore-table", DataTable)
        table.add_columns("Line", "Entry", "How", "Result")

    def show(self, view: PromptView, lore_log: Sequence[LoreScan]) -> None:
        """The prompt for the next line, and the lore of every line written in this session."""
        reuse = view.reused_tokens / view.total_tokens if view.total_tokens else 0.0
        self.query_one("#prompt-totals", Static).update(
            f"{view.total_tokens:,} of {view.n_ctx:,} tokens · the next turn keeps "
            f"{view.reused_tokens:,} ({reuse:.0%}) of the KV cache"
        )
        self.query_one("#prompt-parts", Static).update(prompt_text(view.parts))
        self.query_one("#prompt-scroll", VerticalScroll).scroll_end(animate=False)
        self._show_lore([*lore_log, view.lore])

    def _show_lore(self, scans: Sequence[LoreScan]) -> None:
        table = self.query_one("#lore-table", DataTable)
        table.clear()
        seen: set[int] = set()
        for scan in reversed(scans):  # the newest line first; the next line's scan may repeat the last
            if scan.line in seen:
                continue
            seen.add(scan.line)
            for row in lore_rows(scan):
                table.add_row(*(Text(cell) for cell in row))  # plain text: keys like [/b] are not markup


def prompt_text(parts: Sequence[PromptPart]) -> Text:
    """Every part under a heading with its label, detail and tokens; each section titled once."""
    text = Text()
    section = ""
    for part in parts:
        if part.section != section:
            section = part.section
            text.append(f"{_SECTION_TITLES.get(section, section)}\n", style="bold reverse")
        detail = f" · {printable(part.detail)}" if part.detail else ""
        text.append(f"{part.label}{detail} · {part.tokens:,} tokens\n", style="bold")
        text.append(printable(part.text.strip("\n")) + "\n", style="dim" if part.section == "pinned" else "")
    return text


def lore_rows(scan: LoreScan) -> list[tuple[str, str, str, str]]:
    """A line's lore as table rows: what fired and how, what the window still holds, what was dropped."""
    line = str(scan.line)
    rows = [(line, printable(firing.entry), _how(firing), _stays(firing)) for firing in scan.fired]
    rows += [(line, printable(entry), "still in the window", "kept") for entry in scan.kept]
    rows += [(line, printable(d.entry), printable(d.detail), f"dropped: {d.why}") for d in scan.dropped]
    return rows


def _stays(firing: Firing) -> str:
    return "in" if firing.until is None else f"in to line {firing.until}"


def _how(firing: Firing) -> str:
    if firing.via == "key":
        return printable(f"key “{firing.key}” in {firing.source}")
    if firing.via == "recursion":
        return printable(f"key “{firing.key}” in entry {firing.source}")
    return "sticky"
