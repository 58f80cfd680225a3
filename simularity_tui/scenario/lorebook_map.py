"""SillyTavern lore entries (world_entry.py) as the pack's lore tables: the one mapping of its fields.

Both a card's character book and a world-info file come here. Each field SillyTavern has and this
engine models maps to its `LoreEntry` field; what has no place (a position in the author's note or
at a depth in the chat, an outlet, group scoring, …) is kept under the entry's `extensions` and
listed in the import's output by what it is and which entries have it: the entry still comes in as
lore, so the model still reads it, only not where SillyTavern would have put it.

Text is cleaned and cut by the import's `Cleaner` (import_text.py); numbers outside the schema's
ranges are brought within them, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .card_errors import LorebookError
from .import_text import Cleaner, Ids, slug
from .lore_keys import key_problem as lore_key_problem
from .lore_keys import regex_parts
from .macros import expand, normalise
from .schema import MAX_KEYWORD, MAX_KEYWORDS, MAX_LORE_KEY
from .world_entry import LOGIC, PLACED, POSITIONS, WorldEntry, entry_label

# What each unmodelled SillyTavern setting does, for the list of what was not mapped.
_UNMODELLED_WHY = {
    "delayUntilRecursion": "delayUntilRecursion (comes in only through another entry)",
    "groupOverride": "groupOverride (the highest order wins its group)",
    "useGroupScoring": "useGroupScoring (the entry matching most keys wins its group)",
    "characterFilter": "characterFilter (only for some characters)",
    "triggers": "triggers (only for some kinds of generation)",
    "ignoreBudget": "ignoreBudget (kept when the budget is spent)",
    "vectorized": "vectorized (found by vector search)",
    "automationId": "automationId (runs a Quick Reply)",
}
_DECORATORS = {"@@activate": "always", "@@dont_activate": "never"}
_ROLES = {0: "system", 1: "user", 2: "assistant"}

KeyCheck = Callable[[str], str | None]  # why a key is not a valid lore key (a regex that does not compile), or None


@dataclass
class MappedLore:
    """The lore tables made from a book, and what did not map, by what it is → the entries' ids."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    unmapped: dict[str, list[str]] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)  # lore id -> the entry's uid in its book
    keyless: list[str] = field(default_factory=list)  # entries left out: no key, not constant (never in)

    def note(self, what: str, lore_id: str) -> None:
        self.unmapped.setdefault(what, []).append(lore_id)


def map_entries(
    entries: Iterable[WorldEntry],
    cleaner: Cleaner,
    ids: Ids,
    *,
    tag: dict[str, Any] | None = None,
    reuse: dict[str, str] | None = None,
    key_problem: KeyCheck = lore_key_problem,
    where: str = "",
    numbered: bool = False,
) -> MappedLore:
    """Each entry as a `[lore.<id>]` table. Ids come from the entry's title (or uid); `reuse` gives
    an entry (by uid) the id it had when imported before, so saves that name it still find it.
    `tag` goes under each entry's extensions.sillytavern (the book it came from), with its uid. An
    entry without a title is `entry-<uid>`, or with `numbered` `entry-<n>` by its place (a card book's ids are often
    missing or meaningless). An entry with no key that is not constant is left out, as it never
    comes in (in SillyTavern either): `keyless` lists them."""
    mapped = MappedLore()
    reuse = reuse or {}
    for number, entry in enumerate(entries, start=1):
        notes: list[str] = []
        table = _table(entry, cleaner, notes, tag, key_problem, where)
        if table is None:
            mapped.keyless.append(entry_label(entry.uid, cleaner.line(entry.title, "lore", 60)))
            continue
        lore_id = reuse.get(entry.uid)
        if lore_id is None or lore_id in ids.taken:
            fallback = f"entry-{number}" if numbered else slug(f"entry-{entry.uid}") or "entry"
            lore_id = ids.make(cleaner.line(entry.title, "lore", 64), fallback)
        else:
            ids.taken.add(lore_id)
        mapped.entries[lore_id] = table
        mapped.uids[lore_id] = entry.uid
        for what in notes:
            mapped.note(what, lore_id)
    return mapped


def _table(
    entry: WorldEntry,
    cleaner: Cleaner,
    notes: list[str],
    tag: dict[str, Any] | None,
    key_problem: KeyCheck,
    where: str,
) -> dict[str, Any] | None:
    content, decorators = _decorators(entry.content)
    keywords = _keys(entry.keys, cleaner, entry, key_problem, where)
    always = entry.constant or "@@activate" in decorators
    if not keywords and not always:
        return None
    secondary = _keys(entry.secondary, cleaner, entry, key_problem, where) if entry.selective else []
    if entry.secondary and not entry.selective:
        notes.append("secondary keys with selective off (SillyTavern ignores them too)")
    table: dict[str, Any] = {"keywords": keywords}
    if secondary:
        table["secondary"] = secondary
        table["logic"] = LOGIC[entry.logic]
    table["content"] = cleaner.text(content, "lore")
    if always:
        table["always"] = True
    if not entry.enabled or "@@dont_activate" in decorators:
        table["enabled"] = False
    if entry.case_sensitive is not None:
        table["case_sensitive"] = entry.case_sensitive
    if entry.whole_words is not None:
        table["whole_words"] = entry.whole_words
    if entry.scan_depth is not None:
        table["scan_depth"] = _within(entry.scan_depth, 0, 1000, "scan depth", cleaner)
    table["order"] = _within(entry.order, -100_000, 100_000, "order", cleaner)
    if entry.use_probability and entry.probability is not None and entry.probability < 100:
        table["probability"] = _within(round(entry.probability), 0, 100, "probability", cleaner)
    if entry.prevent_recursion:
        table["recurse"] = False
    if entry.exclude_recursion:
        table["by_recursion"] = False
    for name, value in (("sticky", entry.sticky), ("cooldown", entry.cooldown), ("delay", entry.delay)):
        if value:
            table[name] = _within(value, 0, 100_000, name, cleaner)
    if group := cleaner.line(entry.group, "lore", 10 * MAX_KEYWORD):
        if len(group) > MAX_KEYWORD:
            cleaner.cuts[f"cut a lore group name to {MAX_KEYWORD} characters"] += 1
        table["group"] = group[:MAX_KEYWORD].rstrip()
        if entry.group_weight is not None and entry.group_weight != 100:
            table["group_weight"] = _within(entry.group_weight, 1, 100_000, "group weight", cleaner)
    notes.extend(_unmapped(entry, decorators))
    extensions = cleaner.kept(entry.kept, "lore")
    if tag is not None:  # the book and uid: what a later import of the book finds it by
        uid = int(entry.uid) if re.fullmatch(r"[0-9]{1,17}", entry.uid) else entry.uid
        extensions["sillytavern"] = {**tag, "uid": uid, **extensions.get("sillytavern", {})}
    if decorators:
        extensions.setdefault("sillytavern", {})["decorators"] = list(decorators.values())
    if extensions:
        table["extensions"] = extensions
    return table


def _keys(keys: Iterable[str], cleaner: Cleaner, entry: WorldEntry, key_problem: KeyCheck, where: str) -> list[str]:
    """An entry's keys for the pack: one line each, `{{char}}` resolved (as SillyTavern does before
    matching), empty ones dropped (as there), each once; a key too long to be one is left out."""
    found: list[str] = []
    for key in keys:
        cleaned = cleaner.line(key, "lore", 8 * MAX_LORE_KEY)
        cleaned = _without_global_flag(expand(normalise(cleaned), user="{{user}}", char=cleaner.char).strip())
        if not cleaned:
            continue
        if len(cleaned) > MAX_LORE_KEY:
            cleaner.cuts[f"left out lore keys longer than {MAX_LORE_KEY} characters"] += 1
            continue
        if problem := key_problem(cleaned):
            raise LorebookError(
                f"{where}{entry_label(entry.uid, entry.title)}: the key {cleaned[:80]!r} {problem}",
                hint="Fix the key in the book (SillyTavern reads it as plain text), then import again.",
            )
        if cleaned not in found:
            found.append(cleaned)
    if len(found) > MAX_KEYWORDS:
        cleaner.cuts[f"a lore entry lost keywords past its first {MAX_KEYWORDS}"] += 1
    return found[:MAX_KEYWORDS]


def _without_global_flag(key: str) -> str:
    """A regular-expression key without JavaScript's `g` flag, which means nothing for "does it occur"."""
    parts = regex_parts(key)
    if parts is None or "g" not in parts[1]:
        return key
    return f"/{parts[0]}/{parts[1].replace('g', '')}"


def _decorators(content: str) -> tuple[str, dict[str, str]]:
    """SillyTavern's `@@` lines at the top of an entry's content, and the content without them.

    `@@activate` makes the entry always on, `@@dont_activate` off; others (the card spec V3's
    `@@depth 4`, …) have no meaning here and are kept. As in SillyTavern, content made only of such
    lines stays as it is."""
    if not content.startswith("@@"):
        return content, {}
    lines = content.split("\n")
    count = next((n for n, line in enumerate(lines) if not line.startswith("@@")), len(lines))
    if count == len(lines):
        return content, {}
    found = {line.strip().split()[0] if line.strip() else line: line.strip() for line in lines[:count]}
    return "\n".join(lines[count:]), found


def _within(value: int, low: int, high: int, what: str, cleaner: Cleaner) -> int:
    if low <= value <= high:
        return value
    cleaner.cuts[f"brought a lore entry's {what} of {value} within {low} to {high:,}"] += 1
    return max(low, min(high, value))


def _unmapped(entry: WorldEntry, decorators: dict[str, str]) -> Iterator[str]:
    """What of `entry` has no place in the pack, a line for each kind."""
    position = entry.position
    if isinstance(position, int) and position in POSITIONS and position not in PLACED:
        where = POSITIONS[position]
        if position == 4:
            role = _ROLES.get(entry.role, "system") if isinstance(entry.role, int) else "system"
            where += f" ({entry.depth if entry.depth is not None else 4} back, as {role})"
        if position == 7 and entry.outlet:
            where += " (outletName)"
        yield f"position {position}, {where}: read here as a lore note"
    elif not (isinstance(position, int) and position in PLACED):
        yield f"an unknown position {str(position)[:20]!r}: read here as a lore note"
    for name in entry.unmodelled:
        also = f"{name} (its keys are also looked for outside the story)" if name.startswith("match") else name
        yield _UNMODELLED_WHY.get(name, also)
    for decorator in decorators:
        if decorator not in _DECORATORS:
            yield f"the decorator {decorator[:40]}"
