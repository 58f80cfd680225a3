"""Tokens through the server: the story counts tokens to fit its prompt into the context.

Each server family names its endpoints differently; the first that answers at open is kept:
llama-server `POST /tokenize {"content"}` / `POST /detokenize {"tokens"}`, llama-cpp-python's
server `POST /extras/tokenize {"input"}` / `/extras/detokenize`, vLLM and SGLang
`POST /tokenize {"prompt"}` / `/detokenize`. Some add a BOS token (llama-cpp-python's always does);
what the server adds to an empty text is cut from every answer, because the server adds it to the
prompt again itself.

Every text tokenized is remembered both ways. Turning tokens back into text then needs no request
for anything the story tokenized (every line is), and is exact where a server's own detokenizer is
not (llama-cpp-python's drops tokens longer than 32 bytes; SentencePiece decoders drop the leading
space of a piece): a token run is split into runs the table knows, the server asked only for the rest.

`tokenize` and `detokenize` are synchronous, as the session's surface has them (the story
tokenizes its lines in plain code, on the event loop), so a request the table cannot answer would
block the interface while it runs. The story therefore runs such code ahead in a thread wherever
the event loop would otherwise wait (`ahead`, for `RemoteSession.tokens_ahead`): the requests wait
there, as long as a reply may take (a server shared by players may be slow to answer), and the
code, run again on the event loop, finds every text in the table. The tables are locked for that
(the thread and the event loop both use them). What still goes to the server from the event loop
(a text no code asked for ahead) has its own short timeout (`RemoteConfig.tokenizer_timeout`, 10 s
at most by default, against minutes for a reply).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import RemoteBackendError, garbage, sample
from .http import Calls

_TEXTS_KEPT = 16384  # each way: a long story's lines, variants included, with room to spare


@dataclass(frozen=True)
class Dialect:
    name: str
    tokenize_path: str
    detokenize_path: str
    text_key: str  # the request field that carries the text
    extra: tuple[tuple[str, Any], ...] = ()  # fixed request fields (no BOS where a server can be told)

    def tokenize_body(self, text: str, model: str) -> dict[str, Any]:
        return {self.text_key: text, **dict(self.extra), **({"model": model} if self.text_key == "prompt" else {})}

    def detokenize_body(self, tokens: Sequence[int], model: str) -> dict[str, Any]:
        return {"tokens": list(tokens), **({"model": model} if self.text_key == "prompt" else {})}


DIALECTS = (
    Dialect("llama.cpp server", "/tokenize", "/detokenize", "content", (("add_special", False),)),
    Dialect("llama-cpp-python server", "/extras/tokenize", "/extras/detokenize", "input"),
    Dialect("vLLM/SGLang", "/tokenize", "/detokenize", "prompt", (("add_special_tokens", False),)),
)


class RemoteTokenizer:
    def __init__(self, calls: Calls, dialect: Dialect, model: str, added: tuple[int, ...]) -> None:
        self.calls = calls
        self.dialect = dialect
        self.model = model
        self._added = added  # what the server puts before every text (a BOS), cut from its answers
        self._tokens_of: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._text_of: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._starting: dict[int, set[tuple[int, ...]]] = {}  # first token -> known runs, longest first
        self._lock = threading.RLock()  # the tables: `ahead` fills them from a thread
        self._thread_state = threading.local()  # `patient`: True in a thread running `ahead`
        self._asking: dict[str, threading.Event] = {}  # texts being asked for now, set once learnt

    @classmethod
    def probe(cls, calls: Calls, model: str) -> RemoteTokenizer | None:
        """The first dialect the server answers; None when it offers no tokenizer."""
        doing = "looking for its tokenizer"
        for dialect in DIALECTS:
            answer = calls.try_post(dialect.tokenize_path, dialect.tokenize_body("Hello", model), doing)
            if answer is None or _tokens_in(answer) is None:
                continue
            empty = _tokens_in(calls.post(dialect.tokenize_path, dialect.tokenize_body("", model), doing))
            return cls(calls, dialect, model, tuple(empty or ()))
        return None

    # -- text to tokens -------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens: from the table, else from the server. A text another thread is asking
        for already (a read-ahead) is waited for, within this call's own timeout: the tokenizer's
        short one on the event loop, a reply's in a thread running `ahead`."""
        patient = getattr(self._thread_state, "patient", False)
        config = self.calls.config
        deadline = time.monotonic() + (config.read_timeout if patient else config.tokenizer_timeout)
        while (known := self._known_tokens(text)) is None:
            with self._lock:
                asked = self._asking.get(text)
                mine = asked is None
                if asked is None:
                    asked = self._asking[text] = threading.Event()
            if mine:
                try:
                    body = self.dialect.tokenize_body(text, self.model)
                    answer = self.calls.post(self.dialect.tokenize_path, body, "tokenizing", quick=not patient)
                    return list(self._learn(text, answer))
                finally:
                    with self._lock:
                        self._asking.pop(text).set()
            if not asked.wait(max(0.0, deadline - time.monotonic())):
                raise self.calls.timed_out("tokenizing", quick=not patient)
            # The other request ended: learnt (found above), or failed (this call asks itself).
        return list(known)

    def ahead(self, build: Callable[[], object]) -> None:
        """Run `build` (in a thread of its own) for the texts it tokenizes: they are asked of the
        server as patiently as a reply, and learnt. What it returns or raises is dropped (the game
        may change under it; the run that counts follows, on the event loop)."""
        self._thread_state.patient = True
        try:
            with contextlib.suppress(Exception):
                build()
        finally:
            self._thread_state.patient = False

    async def atokenize(self, client: httpx.AsyncClient, text: str) -> list[int]:
        known = self._known_tokens(text)
        if known is not None:
            return list(known)
        body = self.dialect.tokenize_body(text, self.model)
        answer = await self.calls.apost(client, self.dialect.tokenize_path, body, "tokenizing", quick=True)
        return list(self._learn(text, answer))

    def _known_tokens(self, text: str) -> tuple[int, ...] | None:
        if not text:
            return ()
        with self._lock:
            tokens = self._tokens_of.get(text)
            if tokens is not None:
                self._tokens_of.move_to_end(text)
            return tokens

    def _learn(self, text: str, answer: Any) -> tuple[int, ...]:
        found = _tokens_in(answer)
        if found is None:
            raise garbage(self.calls.url, "tokenizing", sample(answer))
        tokens = tuple(found[len(self._added) :] if found[: len(self._added)] == list(self._added) else found)
        with self._lock:
            self._tokens_of[text] = tokens
            if len(self._tokens_of) > _TEXTS_KEPT:
                self._tokens_of.popitem(last=False)
            self._remember(tokens, text)
        return tokens

    # -- tokens to text -------------------------------------------------------------------------

    def detokenize(self, tokens: Sequence[int]) -> str:
        run = tuple(tokens)
        parts = [part if isinstance(part, str) else self._ask_sync(part) for part in self._split(run)]
        return self._joined(run, parts)

    async def adetokenize(self, client: httpx.AsyncClient, tokens: Sequence[int]) -> str:
        run = tuple(tokens)
        parts = [part if isinstance(part, str) else await self._ask(client, part) for part in self._split(run)]
        return self._joined(run, parts)

    def _ask_sync(self, run: tuple[int, ...]) -> str:
        body = self.dialect.detokenize_body(run, self.model)
        quick = not getattr(self._thread_state, "patient", False)
        return self._learn_text(run, self.calls.post(self.dialect.detokenize_path, body, "detokenizing", quick=quick))

    async def _ask(self, client: httpx.AsyncClient, run: tuple[int, ...]) -> str:
        body = self.dialect.detokenize_body(run, self.model)
        answer = await self.calls.apost(client, self.dialect.detokenize_path, body, "detokenizing", quick=True)
        return self._learn_text(run, answer)

    def _learn_text(self, run: tuple[int, ...], answer: Any) -> str:
        text = _text_in(answer, self.calls.url)
        self._remember(run, text)
        return text

    def _joined(self, run: tuple[int, ...], parts: list[str]) -> str:
        text = "".join(parts)
        if len(parts) > 1:
            self._remember(run, text)  # a prompt's turn is asked for again at every generation
        return text

    def _split(self, tokens: tuple[int, ...]) -> list[str | tuple[int, ...]]:
        """`tokens` as the texts of the longest known runs (greedy), and the unknown runs between."""
        with self._lock:
            return self._split_locked(tokens)

    def _split_locked(self, tokens: tuple[int, ...]) -> list[str | tuple[int, ...]]:
        whole = self._text_of.get(tokens)
        if whole is not None or not tokens:
            return [whole or ""]
        parts: list[str | tuple[int, ...]] = []
        gap_start, index = 0, 0
        while index < len(tokens):
            run = self._longest_known(tokens, index)
            if run is None:
                index += 1
                continue
            if gap_start < index:
                parts.append(tokens[gap_start:index])
            parts.append(self._text_of[run])
            index += len(run)
            gap_start = index
        if gap_start < len(tokens):
            parts.append(tokens[gap_start:])
        return parts

    def _longest_known(self, tokens: tuple[int, ...], at: int) -> tuple[int, ...] | None:
        best: tuple[int, ...] | None = None
        for run in self._starting.get(tokens[at], ()):
            if (best is None or len(run) > len(best)) and tokens[at : at + len(run)] == run:
                best = run
        return best

    def _remember(self, tokens: tuple[int, ...], text: str) -> None:
        if not tokens:
            return
        with self._lock:
            if tokens not in self._text_of:
                self._starting.setdefault(tokens[0], set()).add(tokens)
            self._text_of[tokens] = text
            self._text_of.move_to_end(tokens)
            if len(self._text_of) > _TEXTS_KEPT:
                old, _text = self._text_of.popitem(last=False)
                self._starting[old[0]].discard(old)


def _tokens_in(answer: Any) -> list[int] | None:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if isinstance(tokens, list) and all(isinstance(token, int) and not isinstance(token, bool) for token in tokens):
        return tokens
    return None


def _text_in(answer: Any, url: str) -> str:
    """llama-server says "content", llama-cpp-python and SGLang "text", vLLM "prompt"."""
    if isinstance(answer, dict):
        for key in ("content", "text", "prompt"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    raise garbage(url, "detokenizing", sample(answer))


def no_tokenizer(url: str) -> RemoteBackendError:
    tried = ", ".join(sorted({f"POST {d.tokenize_path}" for d in DIALECTS}))
    return RemoteBackendError(
        f"The model server at {url} offers no tokenizer endpoint (tried {tried}).",
        hint="The game counts tokens to keep the story inside the context: use a server that has one "
        "(llama-server, vLLM, SGLang, or llama-cpp-python's server), or, for a chat API, "
        'api = "chat" (the game then estimates its counts).',
    )
