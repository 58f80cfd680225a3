"""Lore keys: what a key is, whether it is well written, and where it occurs in a text.

A key is a word or phrase, or a regular expression written `/pattern/flags` (flags `i`, `m`, `s`,
`u`). Validation (references.py) and the story's lore scan (story/lore.py) read keys here, so an
author's `simularity check` and the game agree on what every key means.

Whole words follow SillyTavern, the format authors tune their books for: a key matches where the
characters on either side of it are not ASCII letters, digits or `_`. So "king" is not found in
"liking", and a key in a script written without spaces (Chinese, Japanese) still matches inside a
longer word. A regular expression is matched as written: the entry's case and whole-word settings
do not apply to it (add `i` to ignore case), and it runs under a time limit, since a pattern with
nested quantifiers can take exponential time on a long line. All the regular expressions of one
scan share a budget too (`regex_budget`): a book of thousands of slow patterns costs a bounded time
per line, not minutes.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import regex

REGEX_TIMEOUT = 0.05  # seconds one regular-expression key may take on one text
SCAN_REGEX_SECONDS = 0.25  # seconds all the regular-expression keys of one line's scan may take together
_budget = threading.local()  # .deadline: when the regular expressions of the running scan must stop
REGEX_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "u": 0}  # u: text is Unicode anyway
_REGEX_KEY = re.compile(r"/(?P<pattern>.+)/(?P<flags>[A-Za-z]*)", re.DOTALL)
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_RUN = re.compile(r"[A-Za-z0-9_]+")  # a run of word characters: what whole-word keys are indexed by
GRAM = 3  # keys that are not whole words are indexed by their first GRAM characters


def regex_parts(key: str) -> tuple[str, str] | None:
    """(pattern, flags) of a key written `/pattern/flags`; None for a plain key."""
    match = _REGEX_KEY.fullmatch(key)
    return (match.group("pattern"), match.group("flags")) if match else None


def key_problem(key: str) -> str | None:
    """Why `key` cannot be used (None when it can): a regular expression that does not compile, or
    flags other than i, m, s and u."""
    parts = regex_parts(key)
    if parts is None:
        return None
    pattern, flags = parts
    unknown = sorted({flag for flag in flags if flag not in REGEX_FLAGS})
    if unknown:
        hint = " (`g` is not needed: any match counts)" if "g" in unknown else ""
        return f"the regular expression {key!r} has unknown flags {', '.join(unknown)}: use i, m, s or u{hint}"
    try:
        _compiled(pattern, flags)
    except regex.error as error:
        return f"the regular expression {key!r} does not compile: {error}"
    return None


@lru_cache(maxsize=4096)
def _compiled(pattern: str, flags: str) -> regex.Pattern[str]:
    value = 0
    for flag in flags:
        value |= REGEX_FLAGS.get(flag, 0)
    return regex.compile(pattern, value)


class Haystack:
    """Text scanned for keys, made of labelled segments (story lines: "line 12"; or lore entries'
    contents, by id), so that a match can say where it was found. The folded (lower-case) text and
    its word runs are worked out once, when a key first needs them."""

    def __init__(self, segments: Sequence[tuple[str, str]]) -> None:
        self.labels = [label for label, _text in segments]
        self._texts = [text for _label, text in segments]
        self._joined: dict[bool, tuple[str, list[int]]] = {}
        self._runs: dict[bool, frozenset[str]] = {}
        self._grams: dict[bool, frozenset[str]] = {}

    def text(self, case_sensitive: bool) -> str:
        return self._join(case_sensitive)[0]

    def _join(self, case_sensitive: bool) -> tuple[str, list[int]]:
        # Segments are folded one by one: lower() may change a text's length, and each segment's
        # start must stay exact for `label_at`.
        if case_sensitive not in self._joined:
            texts = self._texts if case_sensitive else [text.lower() for text in self._texts]
            starts, position = [], 0
            for text in texts:
                starts.append(position)
                position += len(text) + 1
            self._joined[case_sensitive] = ("\n".join(texts), starts)
        return self._joined[case_sensitive]

    def label_at(self, case_sensitive: bool, position: int) -> str:
        starts = self._join(case_sensitive)[1]
        return self.labels[max(0, bisect.bisect_right(starts, position) - 1)]

    def runs(self, case_sensitive: bool) -> frozenset[str]:
        """Every maximal run of word characters in the text."""
        if case_sensitive not in self._runs:
            self._runs[case_sensitive] = frozenset(_RUN.findall(self.text(case_sensitive)))
        return self._runs[case_sensitive]

    def grams(self, case_sensitive: bool) -> frozenset[str]:
        """Every GRAM characters of the text."""
        if case_sensitive not in self._grams:
            text = self.text(case_sensitive)
            self._grams[case_sensitive] = frozenset(text[i : i + GRAM] for i in range(len(text) - GRAM + 1))
        return self._grams[case_sensitive]


@dataclass(frozen=True)
class Key:
    """One key of one entry, ready to look for."""

    source: str  # as the author wrote it
    needle: str  # a plain key: the text looked for (folded unless case-sensitive)
    case_sensitive: bool
    whole_words: bool
    pattern: regex.Pattern[str] | None = field(default=None, compare=False)  # a regular expression's

    @property
    def anchor(self) -> tuple[str, str] | None:
        """What an index finds this key by: ("run", a word-character run of it) for a whole-word key,
        ("gram", its first GRAM characters) for another plain key; None when it has to be tried
        on every text (a regular expression, a short key, a whole-word key without a run)."""
        if self.pattern is not None:
            return None
        if self.whole_words:
            runs = _RUN.findall(self.needle)
            # Within a whole-word match every run of the key is a whole run of the text too: each
            # is bounded by a non-word character of the key or by the boundary the match requires.
            return ("run", max(runs, key=len)) if runs else None
        return ("gram", self.needle[:GRAM]) if len(self.needle) >= GRAM else None

    def where(self, haystack: Haystack) -> str | None:
        """The label of the segment where the key first occurs; None when it does not occur.
        A regular expression past REGEX_TIMEOUT raises `TimeoutError`."""
        position = self.find(haystack)
        return None if position < 0 else haystack.label_at(self.case_sensitive, position)

    def find(self, haystack: Haystack) -> int:
        """The position of the key's first occurrence in `haystack.text(self.case_sensitive)`, or -1."""
        text = haystack.text(self.case_sensitive)
        if self.pattern is not None:
            return self._search(self.pattern, text)
        position = text.find(self.needle)
        if not self.whole_words:
            return position
        while position >= 0:
            end = position + len(self.needle)
            if (position == 0 or text[position - 1] not in _WORD_CHARS) and (
                end == len(text) or text[end] not in _WORD_CHARS
            ):
                return position
            position = text.find(self.needle, position + 1)
        return -1

    def _search(self, pattern: regex.Pattern[str], text: str) -> int:
        """A regular expression's first match, within its own time and what is left of the scan's
        (`regex_budget`); `TimeoutError` past either."""
        deadline: float | None = getattr(_budget, "deadline", None)
        timeout = REGEX_TIMEOUT if deadline is None else min(REGEX_TIMEOUT, deadline - time.monotonic())
        if timeout <= 0:
            raise TimeoutError
        found = pattern.search(text, timeout=timeout)
        return found.start() if found else -1


@contextmanager
def regex_budget(seconds: float) -> Iterator[None]:
    """Within it, this thread's regular-expression keys take `seconds` at most all together; past
    that, each counts as run out of time at once (reported as such, as a slow key is)."""
    outer = getattr(_budget, "deadline", None)
    _budget.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.deadline = outer


def make_key(source: str, *, case_sensitive: bool, whole_words: bool, pattern: bool = True) -> Key:
    """`source` ready to look for. A regular expression that does not compile (the loader refuses
    such a pack, so only a key built elsewhere) is looked for as plain text. `pattern=False`: plain
    text even when it looks like `/…/` (a key whose macro brought in a name such as "/(a+)+$/")."""
    parts = regex_parts(source) if pattern else None
    if parts is not None and key_problem(source) is None:
        # A regular expression is matched on the text as written: its own flags say the case.
        return Key(source, "", True, False, _compiled(*parts))
    needle = source if case_sensitive else source.lower()
    return Key(source, needle, case_sensitive, whole_words)
