"""A `ModelSession` with no model, for the tests where the real model adds nothing.

Screens, packs, cards, settings and saves round-trips need a session that answers, not one that
thinks: this one answers at once, without llama.cpp, and always the same way. What the real model
decides (context shifts in its KV cache, healing, KV state files, what a line says) stays tested on
the real model (README: the fast tier).

The API (stable: the story, save and UI tests all use it):

    session = FakeSession(n_ctx=2048, replies=["Hello.", Reply("Hi.", speaker="Mira", stage=True)])
    session.replies.append("More.")  # script more at any time; `summaries` likewise
    def test_x(fake_session: FakeSession) -> None: ...  # the fixture: FakeSession() for one test

- A game's line takes the next entry of `replies`: its head step (`head_grammar`) writes
  `Speaker (HH:MM):`, with the entry's speaker (a name the grammar allows; default its first) and
  clock (default the grammar's first hour, minute 00), and leaves the entry; its text step
  (`TEXT_GRAMMAR`) takes the entry and writes ` text\\n`. A whole line (`line_grammar`: the
  player's line impersonated) writes both at once. The stage step before it (its
  `directions_grammar`) writes ` none]\\n`; or, when that next entry is a `Reply` whose `stage` is
  True, the first command the grammar offers; or the command `stage` names.
- A summary request (under the summary grammar) takes the next of `summaries`, else a default.
- Any other prompt takes the next entry of `replies` as its whole reply.
- An exception in `replies` is raised by the generation that takes it (a server gone, say).
- With the script spent, lines come from DEFAULT_LINES in turn (and summaries are numbered).
- `piece_delay` (seconds between pieces) slows a reply, for a screen to show or cancel it midway.
- `requests` records every (prompt, params) asked for, for tests to look at.

Tokens: text splits into word-and-space pieces (" word", ",", "\\n"), so counts look like a real
tokenizer's, and detokenize(tokenize(x)) == x. The vocabulary is one for the whole test process,
as a real model's is fixed: a save written on one FakeSession resumes on another with its tokens.
The KV is tracked as the engine keeps it: the window `plan_window` picks (the window's start kept
between generations, so evictions are as rare), then the generated tokens. Two simplifications: no
refresh of the last tokens after a shift, and no shift mid-reply (a reply that fills the context
stops with "context_full").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simularity_tui.engine import GenerationParams, GenerationResult, Prompt, RestoredState
from simularity_tui.engine.chat_template import RAW, ChatFrame
from simularity_tui.engine.config import fresh_seed
from simularity_tui.engine.context_window import common_prefix, plan_window
from simularity_tui.engine.results import StopReason
from simularity_tui.engine.task_generation import TaskGeneration
from simularity_tui.story.summary import SUMMARY_GRAMMAR
from simularity_tui.story.writing import TEXT_GRAMMAR

SPLICE_MIN, REFRESH = 16, 16  # engine/kv_cache.py's MIN_SHIFT_KEEP and REFRESH_TOKENS, without llama.cpp

PAD, EOS, BOS = 0, 1, 2  # the embedded Gemma's ids
VOCAB_SIZE = 262_144  # the embedded Gemma's: a save's token ids are checked against it
DEFAULT_LINES = (
    "The lamp hums in the quiet.",
    "Waves break on the rocks below.",
    "A gull cries somewhere out in the dark.",
    "The kettle starts to sing.",
)

_SPECIAL = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS}
_SPECIAL_SPLIT = re.compile("(" + "|".join(map(re.escape, _SPECIAL)) + ")")
# Every character falls in one alternative, so the pieces always join back into the text.
_PIECE = re.compile(r" ?\w+| ?[^\w\s]|\s")
# One vocabulary for the process: ids in order of first use; the special ids render as nothing.
_PIECES: list[str] = ["", "", ""]
_IDS: dict[str, int] = {}

_DIRECTIONS_ROOT = 'root ::= " none]\\n"'  # how `directions_grammar` always begins
_HEAD_END = '"):"'  # how `head_grammar`'s root rule ends
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")


class ScriptError(ValueError):
    """A scripted reply no model under the request's grammar could write: the test is wrong."""


@dataclass(frozen=True)
class Reply:
    """One scripted line, with more said about it than its text."""

    text: str  # the line's words (for a plain prompt: the whole reply)
    speaker: str | None = None  # the speaker's name as the grammar writes it; None: its first
    clock: str | None = None  # "HH:MM" within the grammar's hours; None: its first hour, minute 00
    stage: bool | str = False  # the stage step before it: False none, True the first command, or this one


Script = str | Reply | BaseException


@dataclass(frozen=True)
class FakeInfo:
    identity: str
    name: str
    description: str
    n_ctx: int
    n_vocab: int = VOCAB_SIZE


class FakeSession:
    """A `ModelSession` (engine/backend.py) that writes what its script says; see the module notes."""

    def __init__(
        self,
        *,
        n_ctx: int = 2048,
        replies: Iterable[Script] = (),
        summaries: Iterable[str] = (),
        piece_delay: float = 0.0,
        identity: str = "fake-model",
        name: str = "fake",
        chat_frame: ChatFrame = RAW,
        aside: int = 0,
    ) -> None:
        self.info = FakeInfo(identity, name, f"{name} (no model: scripted replies)", n_ctx)
        self.aside = aside  # cells beyond n_ctx for a generation aside, as the engine has (0: none)
        self.chat_frame = chat_frame
        self.replies: deque[Script] = deque(replies)
        self.summaries: deque[str] = deque(summaries)
        self.piece_delay = piece_delay
        self.requests: list[tuple[Prompt, GenerationParams]] = []
        self.closed = False
        self._held: tuple[int, ...] = ()  # what the KV holds: the last window, then the reply
        self._n_keep = 0
        self._first_turn = 0
        self._defaults = 0  # default lines taken
        self._summaries_written = itertools.count(1)
        self._last: asyncio.Task[GenerationResult] | None = None

    # -- the session surface --------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def kv_tokens(self) -> tuple[int, ...]:
        return self._held

    @property
    def bos_token(self) -> int | None:
        return BOS

    @property
    def aside_room(self) -> int:
        return self.aside and self.n_ctx + self.aside - len(self._held)

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Word-and-space pieces; `special` reads "<bos>", "<eos>" and "<pad>" as their tokens."""
        tokens = [BOS] if add_bos else []
        for part in _SPECIAL_SPLIT.split(text) if special else [text]:
            if special and part in _SPECIAL:
                tokens.append(_SPECIAL[part])
            else:
                tokens.extend(_id(piece) for piece in _PIECE.findall(part))
        return tokens

    async def tokens_ahead(self, build: Callable[[], object]) -> None:
        return None  # tokenized in-process, in microseconds: nothing to fetch ahead

    def detokenize(self, tokens: Sequence[int]) -> str:
        # An id no text was tokenized to (a damaged save's) reads as nothing, as an unused token does.
        return "".join(_PIECES[token] if 0 <= token < len(_PIECES) else "" for token in tokens)

    def generate(self, prompt: Prompt | Sequence[int], params: GenerationParams) -> TaskGeneration:
        """Start a reply; it runs once the replies asked for before it are done, as on the engine."""
        if not isinstance(prompt, Prompt):
            prompt = Prompt.plain(prompt)
        if not len(prompt):
            raise ValueError("a prompt needs at least one token")
        self.requests.append((prompt, params))
        generation = TaskGeneration()
        previous = self._last
        generation.start(lambda run: self._run(run, prompt, params, previous))
        self._last = generation.task
        return generation

    async def reset(self) -> None:
        await self._idle()
        self._held, self._n_keep, self._first_turn = (), 0, 0

    async def save_state(self, path: Path) -> int:
        """A small JSON file of what the KV holds (a real one holds the keys and values too)."""
        await self._idle()
        state = {"identity": self.info.identity, "n_keep": self._n_keep, "first_turn": self._first_turn}
        path.write_text(json.dumps({**state, "tokens": list(self._held)}), encoding="utf-8")
        return path.stat().st_size

    async def restore_state(self, path: Path) -> RestoredState:
        await self._idle()
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return RestoredState(0, f"{path.name} does not exist; the story is read again instead.")
        except (OSError, ValueError):
            return RestoredState(0, f"{path.name} is damaged; the story is read again instead.")
        problem = _state_problem(state, self.info.identity, self.n_ctx)
        if problem is not None:
            return RestoredState(0, f"{path.name} {problem}; the story is read again instead.")
        self._held = tuple(state["tokens"])
        self._n_keep, self._first_turn = state["n_keep"], state["first_turn"]
        return RestoredState(len(self._held), None)

    async def close(self) -> None:
        await self._idle()
        self.closed = True

    def close_blocking(self) -> None:
        self.closed = True

    # -- one reply ------------------------------------------------------------------------------

    async def _idle(self) -> None:
        """Wait for the replies asked for so far (the engine queues everything on one thread)."""
        if self._last is not None and not self._last.done():
            await asyncio.wait({self._last})

    async def _run(
        self,
        generation: TaskGeneration,
        prompt: Prompt,
        params: GenerationParams,
        previous: asyncio.Task[GenerationResult] | None,
    ) -> GenerationResult:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        if not params.aside:
            return await self._write(generation, prompt, params)
        assert self.aside_room, "a generation aside on a session without room for it"
        held = self._held, self._n_keep, self._first_turn  # beside the story: what it holds stays
        try:
            return await self._write(generation, prompt, params)
        finally:
            self._held, self._n_keep, self._first_turn = held

    async def _write(self, generation: TaskGeneration, prompt: Prompt, params: GenerationParams) -> GenerationResult:
        started = time.perf_counter()
        seed = params.sampling.seed if params.sampling.seed is not None else fresh_seed()
        start = self._sticky(prompt)
        window = plan_window(prompt, self.n_ctx, min(params.max_tokens, self.n_ctx // 4) + 1, start)
        self._first_turn = window.first_turn
        evaluated = shifted = 0
        if not generation.cancelled:
            evaluated, shifted = self._load(window.tokens, window.n_keep, prompt.turns[start : window.first_turn])
        generation.prefill = 1.0
        read_at = time.perf_counter()
        reply = "" if generation.cancelled or not params.max_tokens else self._reply(params)  # 0: only read
        stop, end = _first_stop(reply, params.stop)
        text, generated, reason = await self._stream(generation, reply, end, end + len(stop) if stop else None, params)
        tokens, tail = self._covering(generated, text) if reason == "stop" else (generated, "")
        ended = time.perf_counter()
        return GenerationResult(
            text=text,
            tokens=tuple(tokens),
            tail_text=tail,
            healed_tokens=0,  # healing is the real engine's (tests/test_healing.py)
            healing_steps=0,
            stop_reason=reason,
            stop_string=stop if reason == "stop" else None,
            seed=seed,
            first_turn=window.first_turn,
            evaluated_tokens=evaluated,
            shifted_tokens=shifted,
            generated_tokens=len(generated),
            prefill_s=read_at - started,
            first_token_s=read_at - started,
            decode_s=ended - read_at,
        )

    async def _stream(
        self, generation: TaskGeneration, reply: str, end: int, stop_end: int | None, params: GenerationParams
    ) -> tuple[str, list[int], StopReason]:
        """Hand out `reply` token by token, up to `end` (where a stop string begins); returns the
        text handed out, the tokens generated, and why it ended. The KV takes each token as the
        engine's does: all but the last when a stop string or the budget ends the reply."""
        reason: StopReason = "cancelled" if generation.cancelled else "eos"
        text, generated = "", list[int]()
        for token in self.tokenize(reply):
            await asyncio.sleep(self.piece_delay)  # the loop runs between pieces: the screen, a cancel
            if generation.cancelled:
                return text, generated, "cancelled"
            generated.append(token)
            written = self.detokenize(generated)
            if len(visible := written[:end]) > len(text):  # never the stop string, as on the engine
                generation.emit(visible[len(text) :])
                text = visible
            reason = self._ending(len(written), stop_end, len(generated), params)
            if reason != "eos":
                break  # the engine leaves this last token for the next prompt to read
            self._held += (token,)
        return text, generated, reason

    def _ending(self, written: int, stop_end: int | None, count: int, params: GenerationParams) -> StopReason:
        """Why the reply ends after its `count`th token, or "eos" while it goes on (and at its end)."""
        if stop_end is not None and written >= stop_end:
            return "stop"
        if count == params.max_tokens:
            return "length"
        if len(self._held) >= self.n_ctx:  # the engine would shift mid-reply; the fake just stops
            return "context_full"
        return "eos"

    def _sticky(self, prompt: Prompt) -> int:
        """Keep the window's start while the KV still holds that turn first (as the engine does)."""
        turn = prompt.turns[self._first_turn] if self._first_turn < len(prompt.turns) else None
        if turn and self._held[self._n_keep : self._n_keep + len(turn)] == turn:
            return self._first_turn
        return 0

    def _load(self, window: list[int], n_keep: int, evicted_turns: Sequence[Sequence[int]]) -> tuple[int, int]:
        """Make the KV hold `window`; returns (tokens read, tokens shifted out). Evicted turns the KV
        held right after the pinned block are shifted out, so nothing kept is read again."""
        held, evicted = self._held, tuple(token for turn in evicted_turns for token in turn)
        shifted = 0
        if evicted and held[:n_keep] == tuple(window[:n_keep]) and held[n_keep : n_keep + len(evicted)] == evicted:
            held, shifted = held[:n_keep] + held[n_keep + len(evicted) :], len(evicted)
        common = min(common_prefix(held, window), len(window) - 1)  # the last is always read again
        kept = common_prefix(held[self._n_keep :], window[n_keep:])
        if common < min(self._n_keep, n_keep) and kept >= SPLICE_MIN:  # a new pinned tail, put in place
            read = n_keep - common + len(window) - n_keep - kept + min(REFRESH, kept)
            self._held, self._n_keep = tuple(window), n_keep
            return read, shifted
        self._held, self._n_keep = tuple(window), n_keep
        return len(window) - common, shifted

    def _covering(self, generated: list[int], text: str) -> tuple[list[int], str]:
        """The tokens wholly inside `text` (not the stop string), and the end of it none covers."""
        count = 0
        while count < len(generated) and len(self.detokenize(generated[: count + 1])) <= len(text):
            count += 1
        return generated[:count], text[len(self.detokenize(generated[:count])) :]

    # -- what the script says -------------------------------------------------------------------

    def _reply(self, params: GenerationParams) -> str:
        """The whole reply to a request, recognised by its grammar (or its stop string)."""
        grammar = params.grammar or ""
        if grammar.startswith(_DIRECTIONS_ROOT):
            return self._directions(grammar)
        if _rule(grammar, "speaker") is not None and _rule(grammar, "hour") is not None:
            if (_rule(grammar, "root") or "").endswith(_HEAD_END):  # the head alone: the line to come says whose it is
                try:
                    return self._head(grammar, self._upcoming())
                except ScriptError:
                    self._take()  # a line the grammar refuses is spent, as a whole line is
                    raise
            return self._line(grammar, self._take())
        if grammar == TEXT_GRAMMAR:
            return self._text(self._take())
        if grammar == SUMMARY_GRAMMAR:
            summary = self.summaries.popleft() if self.summaries else None
            return (summary or f"Summary {next(self._summaries_written)}: the story so far, in short.") + "\n"
        if grammar:
            raise ScriptError("FakeSession writes under the game's three grammars only")
        return self._take().text

    def _upcoming(self) -> Reply:
        """The next entry, left for the line's text to take (an exception is raised now)."""
        entry = self.replies[0] if self.replies else DEFAULT_LINES[self._defaults % len(DEFAULT_LINES)]
        if isinstance(entry, BaseException):
            return self._take()  # raises it
        return entry if isinstance(entry, Reply) else Reply(entry)

    def _take(self) -> Reply:
        if not self.replies:
            self._defaults += 1
            return Reply(DEFAULT_LINES[(self._defaults - 1) % len(DEFAULT_LINES)])
        entry = self.replies.popleft()
        if isinstance(entry, BaseException):
            raise entry
        return entry if isinstance(entry, Reply) else Reply(entry)

    def _directions(self, grammar: str) -> str:
        """` none]\\n`, unless the line to come asks for a stage command (it is not taken here)."""
        upcoming = self.replies[0] if self.replies else None
        stage = upcoming.stage if isinstance(upcoming, Reply) else False
        commands = _literals(_rule(grammar, "command") or "")
        if stage is False or (stage is True and not commands):
            return " none]\n"
        if stage is True:
            return f" {commands[0]}]\n"
        if stage not in commands:
            raise ScriptError(f"the script asks for the stage command {stage!r}; the grammar allows {commands}")
        return f" {stage}]\n"

    def _line(self, grammar: str, reply: Reply) -> str:
        return self._head(grammar, reply) + self._text(reply)

    def _text(self, reply: Reply) -> str:
        if not reply.text or reply.text[0] == " " or "\n" in reply.text:
            raise ScriptError(f"the grammar wants one line that starts with a word, not {reply.text!r}")
        return f" {reply.text}\n"

    def _head(self, grammar: str, reply: Reply) -> str:
        names = _literals(_rule(grammar, "speaker") or "")
        hours = _literals(_rule(grammar, "hour") or "")
        speaker = reply.speaker or names[0]
        clock = reply.clock or f"{hours[0]}:00"
        if speaker not in names:
            raise ScriptError(f"the script asks for {speaker!r} to speak; the grammar allows {names}")
        if not re.fullmatch(r"\d\d:[0-5]\d", clock) or clock[:2] not in hours:
            raise ScriptError(f"the script asks for the time {clock!r}; the grammar allows the hours {hours}")
        return f"{speaker} ({clock}):"


def _id(piece: str) -> int:
    if piece not in _IDS:
        _IDS[piece] = len(_PIECES)
        _PIECES.append(piece)
    return _IDS[piece]


def _first_stop(reply: str, stops: Sequence[str]) -> tuple[str | None, int]:
    """The stop string the reply meets first, and where: the reply's text ends there."""
    found = sorted((at, stop) for stop in stops if stop and (at := reply.find(stop)) >= 0)
    return (found[0][1], found[0][0]) if found else (None, len(reply))


def _rule(grammar: str, name: str) -> str | None:
    """The right-hand side of the GBNF rule `name`, if the grammar has it."""
    match = re.search(rf"^{name} ::= (.*)$", grammar, re.MULTILINE)
    return match.group(1) if match else None


def _literals(alternatives: str) -> list[str]:
    """The string literals of a rule, unescaped (the inverse of writing.py's `_literal`)."""
    return [_ESCAPE.sub(_unescape, body) for body in _LITERAL.findall(alternatives)]


def _unescape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    return chr(int(escaped[1:], 16)) if len(escaped) > 1 else escaped


def _state_problem(state: Any, identity: str, n_ctx: int) -> str | None:
    """Why a state file cannot be restored, or None."""
    if not isinstance(state, dict) or state.get("identity") != identity:
        return "was made with another model"
    tokens, n_keep, first_turn = state.get("tokens"), state.get("n_keep"), state.get("first_turn")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and 0 <= t < VOCAB_SIZE for t in tokens):
        return "holds tokens this model does not have"
    if len(tokens) >= n_ctx:
        return f"holds {len(tokens):,} tokens; this context holds {n_ctx:,}"
    if not isinstance(n_keep, int) or not isinstance(first_turn, int) or not 0 <= n_keep <= len(tokens):
        return "is damaged"
    return None
