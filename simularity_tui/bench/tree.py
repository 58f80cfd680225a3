"""`simularity bench tree`: how long the story-tree browser takes to open on a big story — a save of
200 lines with 40 variants among them (the target: under 300 ms) — against a screen with an empty
tree, opened the same way in the same run (what Textual itself costs to show a screen).

The story is made here, the same on every run, on the bundled lighthouse pack; the model is not
loaded (the browser shows text only).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.widgets import Tree

from ..scenario import bundled_packs_dir, load_pack
from ..settings import Settings
from ..story import Game, Line, SavedGame
from ..ui.tree_screen import TreeScreen

LINES, VARIANTS = 200, 40


class _NoModel:
    """Just enough of a session for a game whose lines are made here (no tokens are read)."""

    n_ctx = 4096
    bos_token = None
    kv_tokens: tuple[int, ...] = ()

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        return []


def big_story() -> Game:
    """The lighthouse with LINES lines on the path in play and VARIANTS more beside them."""
    game = Game(_NoModel(), load_pack(bundled_packs_dir() / "lighthouse"), "storm")  # type: ignore[arg-type]
    chance = random.Random(7)
    speakers = ["mira", "ash", "pip", "narrator"]
    while len(game.lines) < LINES:
        text = " ".join(chance.choice("the lamp sea storm door tea boat light keeper".split()) for _ in range(12))
        game.tree.add(Line(speaker=chance.choice(speakers), text=text, clock="20:00", kind="model", tokens=()))
    path = [node.id for node in game.tree.path()][1:]
    for number in range(VARIANTS):
        at = path[chance.randrange(len(path) - 1)]
        game.tree.head = game.tree.nodes[at].parent or 0
        game.tree.add(Line(speaker="mira", text=f"Variant {number}.", clock="20:00", kind="model", tokens=()))
    game.tree.jump(path[-1])
    return game


class _Empty(Screen[None]):
    def compose(self):  # type: ignore[no-untyped-def]
        yield Tree("The story")


async def _opening_time(screen: Screen[Any]) -> float:
    """Seconds from pushing `screen` to its first full frame, in a headless app."""
    app: App[None] = App()
    async with app.run_test(size=(120, 40)) as pilot:
        started = time.perf_counter()
        await app.push_screen(screen)
        await pilot.pause()
        tree = screen.query_one(Tree)
        while tree.cursor_line < 0 and isinstance(screen, TreeScreen):
            await pilot.pause()
        return time.perf_counter() - started


def run_tree_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    del settings, model_override
    game = big_story()
    nodes = len(game.tree.nodes) - 1
    with tempfile.TemporaryDirectory() as folder:
        saved = SavedGame(game, Path(folder) / "big.toml", datetime.now(UTC))
        browser = [asyncio.run(_opening_time(TreeScreen(saved))) for _ in range(args.rounds)]
        empty = [asyncio.run(_opening_time(_Empty())) for _ in range(args.rounds)]
    opened, baseline = statistics.median(browser), statistics.median(empty)
    print(f"story tree: {len(game.lines)} lines in play, {nodes} in all ({VARIANTS} variants)")
    print(f"opening the browser: {opened * 1000:.0f} ms median of {args.rounds} (target < 300 ms)")
    print(f"an empty tree screen, the same way: {baseline * 1000:.0f} ms; ratio {opened / baseline:.2f}")
    return 0
