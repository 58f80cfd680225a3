"""Jump-forward decoding: where a grammar admits exactly one continuation, the engine appends it in
one batched decode instead of sampling it token by token (as SGLang does with its compressed
grammar automaton). The rest of a speaker's name, ` (`, `:`, `):`, `]` and a line's end cost a
decode each when sampled, and the grammar check of each draw on top.

The grammars this reads are the regular subset of GBNF the story writes (rules of literals,
character classes, groups, alternatives and `* + ?`, no recursion); for any other grammar,
`GrammarJumps.of` gives None and every token is sampled, as before.

The automaton runs on characters: `feed` the text as it is written, and `forced()` says what must
come next. A forced text stops short of trailing letters, digits and spaces when the model may go on with a
letter, a digit or a space (it would write them as one token with what follows: forcing them would
split tokens the way the model never reads them). Digits do not count where the model writes every
digit as a token of its own (Gemma, Llama 2), so an hour's shared first digit is forced there.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_STATES = 4096  # a grammar bigger than this (thousands of stage commands) is not worth the automaton
MAX_CLASS_MEMBERS = 64  # a class of more characters (or a negated one) is not spelled out by `leaves`
_RULE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*::=\s*(.*)$")


class _Unsupported(Exception):
    """A grammar outside the subset: no jumps for it."""


@dataclass(frozen=True)
class _Chars:
    """A set of characters: `single` when it holds exactly one, else a test."""

    single: str | None
    test: Callable[[str], bool]
    digits: bool = False  # every character of it is a digit
    members: frozenset[str] | None = None  # every character of it, where they are few (not negated)

    def joins(self, digits_alone: bool) -> bool:
        """Whether the model may write this as one token with a word or space before it."""
        if self.single is None:
            return not (self.digits and digits_alone)
        return _joins(self.single, digits_alone)


def _joins(char: str, digits_alone: bool) -> bool:
    if char.isdigit():
        return not digits_alone
    return char.isalnum() or char.isspace()


@dataclass
class _State:
    edges: list[tuple[_Chars | None, int]] = field(default_factory=list)  # None: an empty move


class GrammarJumps:
    """The grammar's automaton, following the text written so far."""

    def __init__(self, states: list[_State], start: int, accept: int, *, digits_alone: bool = False) -> None:
        self._states = states
        self._digits_alone = digits_alone  # the model writes each digit as a token of its own (Gemma)
        self._accept = accept
        self._current = self._closure({start})
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # token bytes to text

    @classmethod
    def of(cls, grammar: str, *, digits_alone: bool = False) -> GrammarJumps | None:
        """The automaton of `grammar`, or None when it is outside the subset. `digits_alone`: the
        model's vocabulary has a token per digit and none of several (a forced digit joins nothing)."""
        try:
            return _Builder(grammar).build(digits_alone)
        except _Unsupported:
            return None

    @property
    def lost(self) -> bool:
        """Whether the text left the grammar (nothing can follow): jumps stop."""
        return not self._current

    def feed(self, text: str) -> None:
        for char in text:
            self._current = self._closure(
                {target for state in self._current for chars, target in self._states[state].edges
                 if chars is not None and (chars.single == char if chars.single is not None else chars.test(char))}
            )  # fmt: skip

    def forced(self) -> tuple[str, bool]:
        """The text that must come next, and whether the grammar is complete after it (nothing
        may follow). Does not feed it."""
        states, forced = self._current, ""
        while states and self._accept not in states:
            moves = {(chars.single, target) for state in states for chars, target in self._states[state].edges if chars}
            singles = {single for single, _target in moves}
            char = singles.pop() if len(singles) == 1 else None
            if char is None:  # a choice, or a class of several characters
                break
            forced += char
            states = self._closure({target for _single, target in moves})
        complete = bool(states) and self._accept in states and not self._moves_on(states)
        if not complete and self._may_join(states):
            while forced and _joins(forced[-1], self._digits_alone):
                forced = forced[:-1]
        return forced, complete

    def leaves(self, depth: int = 3, limit: int = 256) -> list[str] | None:
        """Texts that every token the grammar admits next starts with or begins: the grammar's next
        `depth` characters spelled out, or fewer where a class of many characters follows, the
        grammar may end, or spelling one character further would take more than `limit` texts.
        None where that narrows nothing (any text may follow) or the grammar may end here (an
        end-of-generation token is admitted).

        A token that neither starts with one of them nor is a prefix of one cannot be admitted: the
        sampler asks the grammar about those tokens alone instead of the whole vocabulary."""
        frontier: list[tuple[str, set[int]]] = [("", self._current)]
        leaves: list[str] = []
        for _step in range(depth):
            following: list[tuple[str, set[int]]] = []
            for text, states in frontier:
                if self._accept in states:  # it may end here: an end-of-generation token is admitted
                    if not text:
                        return None
                    leaves.append(text)
                    continue
                moves: dict[str, set[int]] = {}
                spelled = True
                for state in states:
                    for chars, target in self._states[state].edges:
                        if chars is None:
                            continue
                        if chars.members is None:
                            spelled = False
                            break
                        for char in chars.members:
                            moves.setdefault(char, set()).add(target)
                if not spelled:  # a class of many characters: every token starting with `text`
                    leaves.append(text)
                    continue
                following += [(text + char, self._closure(targets)) for char, targets in moves.items()]
            if len(leaves) + len(following) > limit:
                leaves += [text for text, _states in frontier]  # stop spelling out: the step before
                following = []
                break
            frontier = following
        leaves += [text for text, _states in frontier]
        return None if "" in leaves or not leaves else list(dict.fromkeys(leaves))

    def _moves_on(self, states: set[int]) -> bool:
        return any(chars is not None for state in states for chars, _target in self._states[state].edges)

    def _may_join(self, states: set[int]) -> bool:
        """Whether what the model writes next may be one token with the end of a forced word (a
        letter, a space; a digit, unless the model writes digits alone)."""
        return any(
            chars.joins(self._digits_alone)
            for state in states
            for chars, _target in self._states[state].edges
            if chars is not None
        )

    def _closure(self, states: set[int]) -> set[int]:
        seen, stack = set(states), list(states)
        while stack:
            for chars, target in self._states[stack.pop()].edges:
                if chars is None and target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen


class _Builder:
    """GBNF (the subset) to a character automaton, Thompson's construction."""

    def __init__(self, grammar: str) -> None:
        self.rules: dict[str, str] = {}
        for line in grammar.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = _RULE.match(line)
            if match is None:
                raise _Unsupported(line)
            self.rules[match.group(1)] = match.group(2)
        if "root" not in self.rules:
            raise _Unsupported("no root")
        self.states: list[_State] = []
        self.expanding: list[str] = []

    def build(self, digits_alone: bool) -> GrammarJumps:
        start, end = self._rule("root")
        accept = self._new()
        self._edge(end, None, accept)
        return GrammarJumps(self.states, start, accept, digits_alone=digits_alone)

    def _new(self) -> int:
        if len(self.states) >= MAX_STATES:
            raise _Unsupported("too big")
        self.states.append(_State())
        return len(self.states) - 1

    def _edge(self, source: int, chars: _Chars | None, target: int) -> None:
        self.states[source].edges.append((chars, target))

    def _rule(self, name: str) -> tuple[int, int]:
        if name not in self.rules or name in self.expanding:
            raise _Unsupported(f"rule {name}")  # unknown, or recursive: not regular as written
        self.expanding.append(name)
        text = self.rules[name]
        fragment, rest = self._alternatives(text, 0)
        if text[rest:].strip():
            raise _Unsupported(text)
        self.expanding.pop()
        return fragment

    def _alternatives(self, text: str, at: int) -> tuple[tuple[int, int], int]:
        start, end = self._new(), self._new()
        while True:
            (first, last), at = self._sequence(text, at)
            self._edge(start, None, first)
            self._edge(last, None, end)
            at = _skip(text, at)
            if at < len(text) and text[at] == "|":
                at += 1
                continue
            return (start, end), at

    def _sequence(self, text: str, at: int) -> tuple[tuple[int, int], int]:
        start = current = self._new()
        while True:
            at = _skip(text, at)
            if at >= len(text) or text[at] in "|)":
                return (start, current), at
            (first, last), at = self._atom(text, at)
            at, postfix = (at + 1, text[at]) if at < len(text) and text[at] in "*+?" else (at, "")
            if postfix in ("*", "?"):
                self._edge(first, None, last)
            if postfix in ("*", "+"):
                self._edge(last, None, first)
            self._edge(current, None, first)
            current = last

    def _atom(self, text: str, at: int) -> tuple[tuple[int, int], int]:
        char = text[at]
        if char == '"':
            return self._literal(text, at + 1)
        if char == "[":
            return self._class(text, at + 1)
        if char == "(":
            fragment, at = self._alternatives(text, at + 1)
            if at >= len(text) or text[at] != ")":
                raise _Unsupported(text)
            return fragment, at + 1
        match = re.compile(r"[A-Za-z][A-Za-z0-9_-]*").match(text, at)
        if match is None:
            raise _Unsupported(text[at:])
        return self._rule(match.group()), match.end()

    def _literal(self, text: str, at: int) -> tuple[tuple[int, int], int]:
        start = current = self._new()
        while at < len(text) and text[at] != '"':
            char, at = _char(text, at)
            following = self._new()
            self._edge(current, _Chars(char, char.__eq__, members=frozenset(char)), following)
            current = following
        if at >= len(text):
            raise _Unsupported("an unclosed literal")
        return (start, current), at + 1

    def _class(self, text: str, at: int) -> tuple[tuple[int, int], int]:
        negated = at < len(text) and text[at] == "^"
        at += negated
        ranges: list[tuple[str, str]] = []
        while at < len(text) and text[at] != "]":
            low, at = _char(text, at)
            high = low
            if at + 1 < len(text) and text[at] == "-" and text[at + 1] != "]":
                high, at = _char(text, at + 1)
            ranges.append((low, high))
        if at >= len(text):
            raise _Unsupported("an unclosed class")

        def test(char: str) -> bool:
            return any(low <= char <= high for low, high in ranges) != negated

        single = ranges[0][0] if not negated and len(ranges) == 1 and ranges[0][0] == ranges[0][1] else None
        digits = not negated and all("0" <= low <= high <= "9" for low, high in ranges)
        few = not negated and sum(max(0, ord(high) - ord(low) + 1) for low, high in ranges) <= MAX_CLASS_MEMBERS
        members = (
            frozenset(chr(code) for low, high in ranges for code in range(ord(low), ord(high) + 1)) if few else None
        )
        start, end = self._new(), self._new()
        self._edge(start, _Chars(single, test, digits, members), end)
        return (start, end), at + 1


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^"}


def _char(text: str, at: int) -> tuple[str, int]:
    """One character of a literal or class, escapes read; and where the next one starts."""
    if text[at] != "\\":
        return text[at], at + 1
    if at + 1 >= len(text) or text[at + 1] not in _ESCAPES:
        raise _Unsupported(text[at : at + 6])  # \x, \u: not written by the story
    return _ESCAPES[text[at + 1]], at + 2


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t":
        at += 1
    return at
