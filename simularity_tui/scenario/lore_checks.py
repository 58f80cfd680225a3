"""What `simularity check` says about a pack's lore beyond its types.

Errors (the pack does not load): a regular-expression key that does not compile, or has flags other
than i, m, s and u. Warnings (the pack plays, but probably not as its author meant): entries that
bring each other in round and round (recursion still stops after `[lore_scan] recursion` steps,
but every step costs notes), entries that can never come in, and groups that choose nothing.
Each comes as (key path, message), for the loader to put at its file, line and column.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..toml_source import KeyPath, Problem
from .lore_index import group_names, lore_index
from .lore_keys import Haystack, key_problem, regex_budget
from .lore_match import Match, match_entry
from .macros import expand
from .schema import Pack
from .sources import read_sources

Finding = tuple[KeyPath, str]
_CYCLE_NAMES = 8  # entries named in one cycle's warning; the rest are counted


def key_findings(pack: Pack) -> Iterator[Finding]:
    """Keys that cannot be used: each at its own place in its list."""
    for lid, entry in pack.lore.items():
        for field in ("keywords", "secondary"):
            for number, key in enumerate(getattr(entry, field)):
                if problem := key_problem(key):
                    yield ["lore", lid, field, number], problem


def lore_warnings(pack: Pack) -> list[Finding]:
    return [*_never_in(pack), *_groups(pack), *_cycles(pack)]


def lore_warning_problems(root: Path, pack: Pack) -> list[Problem]:
    """`lore_warnings` of the pack loaded from `root`, each at its file, line and column."""
    findings = lore_warnings(pack)
    if not findings:
        return []
    sources, _problems = read_sources(root)
    return [sources.problem(where, f"warning: {message}") for where, message in findings]


def _never_in(pack: Pack) -> Iterator[Finding]:
    scan = pack.lore_scan
    for lid, entry in pack.lore.items():
        if not entry.enabled or entry.always:
            continue
        depth = scan.depth if entry.scan_depth is None else entry.scan_depth
        if entry.probability == 0:
            yield ["lore", lid, "probability"], "probability = 0: this entry never comes in"
        elif depth == 0 and (not entry.by_recursion or scan.recursion == 0):
            yield (
                ["lore", lid, "scan_depth" if entry.scan_depth is not None else "keywords"],
                "its keys are looked for in no line (scan depth 0), and no other entry may bring it in: "
                "it never comes in",
            )
        elif entry.logic == "not_any" and entry.keywords and set(entry.keywords) <= set(entry.secondary):
            yield (
                ["lore", lid, "secondary"],
                "logic = not_any, and every keyword is a secondary key too: when a keyword is found, so is a "
                "secondary key, and the entry never comes in",
            )


def _groups(pack: Pack) -> Iterator[Finding]:
    sizes = Counter(
        name for entry in pack.lore.values() if entry.enabled and not entry.always for name in group_names(entry)
    )
    for lid, entry in pack.lore.items():
        names = group_names(entry)
        if names and entry.always:
            yield ["lore", lid, "group"], "an always-on entry is in every prompt: its group chooses nothing"
        elif entry.enabled and (alone := [name for name in names if sizes[name] == 1]):
            yield (
                ["lore", lid, "group"],
                f"the only entry of the group '{alone[0]}': a group picks one of several entries",
            )
        if not names and entry.group_weight != 100:
            yield ["lore", lid, "group_weight"], "group_weight without a group does nothing"


# Seconds all the regular-expression keys may take while `check` looks for recursion cycles.
CHECK_REGEX_SECONDS = 5.0


def _cycles(pack: Pack) -> Iterator[Finding]:
    if pack.lore_scan.recursion == 0:
        return
    with regex_budget(CHECK_REGEX_SECONDS):  # slow keys beyond it count as no match: no edge, no hang
        edges = _recursion_edges(pack)
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        first = min(component, key=lambda lid: lore_index(pack).entries[lid].position)
        path = _shortest_cycle(edges, first, set(component))
        shown = " → ".join([*path[:_CYCLE_NAMES], *(["…"] if len(path) > _CYCLE_NAMES else []), first])
        more = f" ({len(component)} entries in all bring one another in)" if len(component) > len(path) else ""
        yield (
            ["lore", first],
            f"recursion cycle: {shown}{more}. Recursion stops after [lore_scan] recursion = "
            f"{pack.lore_scan.recursion} steps, but each step brings in notes: to break the cycle, set "
            "recurse = false or by_recursion = false on one of them",
        )


def _recursion_edges(pack: Pack) -> dict[str, list[str]]:
    """Which entries each entry's content brings in (keys and secondary keys as in play). Not one
    of its own group: the group is taken once the entry is in."""
    index = lore_index(pack)
    user = pack.player.name if any(c.player for c in pack.characters.values()) else "{{user}}"
    edges: dict[str, list[str]] = {}
    for lid in index.entries:
        entry = pack.lore[lid]
        if not entry.recurse:
            continue
        haystack = Haystack([(lid, expand(entry.content, user=user))])
        edges[lid] = [
            other
            for other, numbers in index.candidates(haystack).items()
            if other != lid
            and pack.lore[other].by_recursion
            and not set(group_names(entry)) & set(group_names(pack.lore[other]))
            and isinstance(match_entry(index.entries[other], pack.lore[other].logic, numbers, haystack), Match)
        ]
    return edges


def _strongly_connected(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion (a book may chain thousands)."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in edges:
        if root in number:
            continue
        work = [(root, iter(edges.get(root, ())))]
        number[root] = low[root] = len(number)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == number[node]:
                    components.append(_pop_component(stack, on_stack, node))
            elif child not in number:
                number[child] = low[child] = len(number)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges.get(child, ()))))
            elif child in on_stack:
                low[node] = min(low[node], number[child])
    return components


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> list[str]:
    component = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _shortest_cycle(edges: Mapping[str, Sequence[str]], start: str, within: set[str]) -> list[str]:
    """The entries of a shortest way from `start` back to itself, within one component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in edges.get(node, ()):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if child in within and child not in came_from:
                came_from[child] = node
                queue.append(child)
    return [start]
