"""Lore matching on a big book, for `simularity bench story`: milliseconds per line on a pack of
5,000 entries (the target: under 5), against a regular expression per entry and key on the same
lines, measured in the same run (what matching cost before the index: story/lore.py).

The book and the story are made here, the same on every run: made-up words as keys (some phrases,
some with secondary keys, some regular expressions), groups, and contents that mention other
entries' keys (recursion). Each line mentions a few keys among ordinary words; the notes a line
brings in are kept on it, as in play, so entries the window holds are kept, not noted again.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import replace
from typing import Any

from ..scenario.lore_index import lore_index
from ..scenario.schema import LoreEntry, Pack
from ..story import Line
from ..story.lore import lore_seed, scan_lore

BOOK_ENTRIES = 5_000
STORY_LINES = 300
BASELINE_LINES = 20  # the baseline is slow: a few lines say enough
_FILLER = (
    "the a and of to in it was she he said looked at her his from on with not all they there "
    "night sea wind lamp door stairs old cold light dark were had been into over under across"
).split()


def _word(chance: random.Random) -> str:
    return "".join(chance.choice("bcdfghklmnprstvz") + chance.choice("aeiou") for _ in range(chance.randint(2, 4)))


def _entry(number: int, words: list[str], chance: random.Random) -> LoreEntry:
    word = words[number]
    keywords = [word, f"{word} {words[(number + 1) % len(words)]}"] if number % 7 == 0 else [word]
    if number % 50 == 0:
        keywords.append(f"/{word}s?ing\\b/i")
    mentions = " ".join(chance.choice(words) for _ in range(2))
    return LoreEntry(
        keywords=keywords,
        secondary=[chance.choice(_FILLER)] if number % 5 == 0 else [],
        logic="and_any" if number % 10 else "not_any",
        content=f"Entry {number}: {word} is known along the coast; it is said to concern {mentions}.",
        order=chance.randint(0, 200),
        group=f"g{number // 5}" if number % 20 < 5 else "",
        probability=100 if number % 9 else 60,
    )


def book_pack(base: Pack, entries: int = BOOK_ENTRIES) -> Pack:
    """`base` with a made-up book of `entries` lore entries in place of its own."""
    chance = random.Random(13)
    words = list(dict.fromkeys(_word(chance) for _ in range(entries * 2)))[:entries]
    lore = {f"entry-{number}": _entry(number, words, chance) for number in range(entries)}
    return base.model_copy(update={"lore": lore})


def _story_text(pack: Pack, chance: random.Random) -> str:
    keys = [entry.keywords[0] for entry in pack.lore.values() if entry.keywords]
    words = [chance.choice(_FILLER) for _ in range(chance.randint(15, 40))]
    for _mention in range(chance.randint(0, 3)):
        words.insert(chance.randrange(len(words)), chance.choice(keys))
    return " ".join(words).capitalize() + "."


def measure_lore(base: Pack, *, entries: int = BOOK_ENTRIES, lines: int = STORY_LINES) -> dict[str, Any]:
    """Lore matching time per line on a book of `entries`, and the baseline's, over `lines` lines."""
    pack = book_pack(base, entries)
    started = time.perf_counter()
    lore_index(pack)  # built once per pack, on its first scan: timed on its own
    index_seconds = time.perf_counter() - started
    chance = random.Random(7)
    speakers = [cid for cid in pack.characters]
    story: list[Line] = []
    seconds = []
    for number in range(lines):
        text = _story_text(pack, chance)
        story.append(Line(speaker=speakers[number % len(speakers)], text=text, clock="20:00", kind="model", tokens=()))
        scan = scan_lore(
            pack,
            story,
            window_start=max(0, len(story) - 60),
            count_tokens=lambda note: len(note) // 4,
            budget=800,
            seed=lore_seed(pack, "bench", story),
        )
        seconds.append(scan.seconds)
        story[-1] = replace(story[-1], notes=tuple(firing.entry for firing in scan.fired))
    baseline = _baseline(pack, story[:BASELINE_LINES])
    engine = statistics.mean(seconds)
    return {
        "entries": entries,
        "lines": lines,
        "ms_per_line": engine * 1000,
        "max_ms": max(seconds) * 1000,
        "index_ms": index_seconds * 1000,
        "baseline_ms_per_line": baseline * 1000,
        "ratio": engine / baseline,
    }


def _baseline(pack: Pack, story: list[Line]) -> float:
    """Seconds per line for a regular expression per entry and key over the last 4 lines (whole
    words, ignoring case), compiled beforehand: the obvious way, and the engine's before."""
    patterns = [
        re.compile(rf"(?<!\w){re.escape(key)}(?!\w)", re.IGNORECASE)
        for entry in pack.lore.values()
        for key in entry.keywords
        if not key.startswith("/")
    ]
    started = time.perf_counter()
    for number in range(1, len(story) + 1):
        text = "\n".join(f"{line.speaker}: {line.text}" for line in story[max(0, number - 4) : number])
        [pattern for pattern in patterns if pattern.search(text)]
    return (time.perf_counter() - started) / len(story)
