"""A model on a server, behind the same surface as the in-process session (engine.backend).

The prompt is planned exactly as the in-process engine plans its KV cache (context_window): the
pinned block, then whole turns, the oldest evicted in one big chunk only when the next would not
fit. Between evictions every prompt therefore extends the one before it, and the server's prefix
cache (llama-server's cache_prompt, llama-cpp-python's prefix match, vLLM's and SGLang's prefix
caching) reads only the new turn. The prompt travels as text (llama-cpp-python's server takes
nothing else); the server adds its own BOS, so this session asks for none.

A server keeps its cache itself. On llama-server the game plays in a slot of its own: the one
`RemoteConfig.slot` names (`simularity host` gives each player's game one of a shared server's),
or slot 0 of a one-slot server (`--parallel 1`). Where the server saves slot files
(`--slot-save-path`) `save_state` saves that slot with a save and `restore_state` brings it back
(slots.py); elsewhere (several slots and none asked for, which the server hands out by the
prompt, or another server) they do nothing.

Tokenizing is synchronous in the session's surface and goes to the server when the text is new;
the story asks for new texts ahead, asynchronously, with `tokens_ahead` (tokenizer.py says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ...untrusted_text import printable
from ..chat_template import RAW, ChatFrame, chosen_frame
from ..config import GenerationParams, fresh_seed
from ..context_window import Window, common_prefix, plan_window
from ..prompt import Prompt
from ..results import GenerationResult, RestoredState, StopReason
from ..task_generation import TaskGeneration
from .completions import Chunk, GrammarRefused, chat_body, completion_body, stream_completion
from .config import RemoteConfig
from .errors import RemoteBackendError, garbage, sample
from .http import Calls, async_client, sync_client
from .pieces import PieceTokenizer
from .slots import SlotFileError, SlotState, read_sidecar, slot_filename, write_sidecar
from .tokenizer import RemoteTokenizer, no_tokenizer

log = logging.getLogger("simularity")
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteInfo:
    url: str  # without credentials, as everything shown or saved
    model: str  # the id the server gives in /v1/models
    name: str
    description: str
    identity: str  # saves keep their token ids only when resumed on the same server and model
    n_ctx: int
    tokenizer: str  # which server family's tokenizer endpoints answered


@dataclass
class _Reply:
    """What a reply's request planned and what the server said of the reply."""

    window: Window | None = None  # the part of the prompt sent, once planned
    start: int = 0  # the window's first turn before this request (what was evicted starts there)
    guessed: int = 0  # prompt tokens the server must read, by our count (when it does not say)
    stop_reason: StopReason = "cancelled"  # until the reply is whole
    finish: str | None = None
    stop_string: str | None = None
    evaluated: int | None = None
    first_text_at: float | None = None
    echo: str = ""  # the prefilled story, which llama-server repeats before its reply
    held: str = ""  # text that repeats the story so far: its reply, if the story does not come whole


class RemoteSession:
    # Room kept free of the plan: the server adds its BOS, and tokenizes the joined text of turns
    # that were tokenized apart (a few tokens can differ at the seams).
    SEAM_TOKENS = 8

    def __init__(
        self,
        config: RemoteConfig,
        calls: Calls,
        tokenizer: RemoteTokenizer | PieceTokenizer,
        info: RemoteInfo,
        frame: ChatFrame = RAW,
        *,
        slot: int | None = None,
        build: str = "",
        prefill: bool = False,
    ) -> None:
        self.config = config
        self.chat_frame = frame  # the same frame as in-process: the prompt travels as its text
        self._calls = calls
        self._tokenizer = tokenizer
        self.info = info
        self._held: tuple[int, ...] = ()  # what the server's cache should hold: the last prompt and reply
        self._window: tuple[int, ...] = ()  # the last prompt sent, in tokens
        self._n_keep = 0
        self._first_turn = 0  # the window's start, kept between generations so that evictions are rare
        self._grammar = True  # False once the server refused a grammar: replies are checked by the story
        # The last reply or slot action asked for: each waits for the one before (one slot, one queue).
        self._last: asyncio.Task[Any] | None = None
        self._slot = slot  # llama-server's slot the game plays in (None: the server picks)
        self._build = build  # the server's build, which its slot files are bound to
        self._saves_slots = slot is not None  # False once the server said it saves no slot files
        self._prefill = prefill  # api "chat": the story goes as an assistant message the model continues

    @classmethod
    async def open(cls, config: RemoteConfig) -> RemoteSession:
        """Ask the server which model it serves, how large its context is, and how it tokenizes."""
        return await asyncio.to_thread(cls.open_blocking, config)

    @classmethod
    def open_blocking(cls, config: RemoteConfig) -> RemoteSession:
        calls = Calls(config, sync_client(config))
        try:
            model, reported = _served_model(calls.get("/v1/models", "asking which model it serves"), calls.url)
            props = _llama_server_props(calls.client)
            reported = reported or _props_context(props)
            chat = config.api == "chat"
            tokenizer = RemoteTokenizer.probe(calls, model) or (PieceTokenizer() if chat else None)
            if tokenizer is None:
                raise no_tokenizer(calls.url)
            # Chat messages are framed by the server's own template: the story goes as plain text.
            frame = RAW if chat else _server_frame(config.template, props, calls.url)
        except BaseException:
            calls.client.close()
            raise
        n_ctx = min(config.n_ctx, reported) if reported else config.n_ctx
        shown_model = printable(model)  # the server's words, shown on the status line
        short = shown_model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or shown_model
        info = RemoteInfo(
            url=calls.url,
            model=model,
            name=short,
            description=f"{short} on {calls.url}",
            # Estimated counts' ids are not the model's: a save keeps them only for the same estimate.
            identity=f"remote:{calls.url}#{model}" + ("#pieces" if isinstance(tokenizer, PieceTokenizer) else ""),
            n_ctx=n_ctx,
            tokenizer=tokenizer.dialect.name,
        )
        build = props.get("build_info")
        slot = _chosen_slot(config.slot, props.get("total_slots"), calls.url)
        # llama-server goes on with a last assistant message (unless started with --no-prefill-assistant,
        # which its /props does not say); the cloud APIs answer it instead, so they are asked.
        prefill = chat and "chat_template" in props
        return cls(
            config, calls, tokenizer, info, frame,
            slot=slot, build=build if isinstance(build, str) else "", prefill=prefill,
        )  # fmt: skip

    # -- the session surface --------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def kv_tokens(self) -> tuple[int, ...]:
        return self._held

    @property
    def bos_token(self) -> int | None:
        return None  # the server puts its own BOS before the prompt's text

    @property
    def aside_room(self) -> int:
        return 0  # the server's slot holds one sequence: anything else read there displaces the story

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens as the server counts them. `special` and `add_bos` cannot be chosen on every server;
        the prompt travels as text and the server tokenizes it its own way (counts are what matter here).

        Blocking, as the surface has it: a text not tokenized before waits on the server, for the
        tokenizer's short timeout at most (tokenizer.py says more)."""
        return self._tokenizer.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._tokenizer.detokenize(tokens)

    async def tokens_ahead(self, build: Callable[[], object]) -> None:
        """Run `build` in a thread, so that the texts it tokenizes are asked of the server there
        and the event loop goes on; the same code run next on the loop finds them known
        (tokenizer.py). `build` must change nothing that matters: it may run alongside the game.
        What it returns or raises is dropped: the run on the loop says any real error."""
        if isinstance(self._tokenizer, PieceTokenizer):
            return  # estimated counts ask nothing of the server
        await asyncio.to_thread(self._tokenizer.ahead, build)

    def generate(self, prompt: Prompt | Sequence[int], params: GenerationParams) -> TaskGeneration:
        """Start a reply to `prompt`; it is sent once the replies asked for before it are done."""
        if not isinstance(prompt, Prompt):
            prompt = Prompt.plain(prompt)
        if not len(prompt):
            raise ValueError("a prompt needs at least one token")
        generation = TaskGeneration()
        previous = self._last
        generation.start(lambda run: self._run(run, prompt, params, previous))
        self._last = generation.task
        return generation

    async def reset(self) -> None:
        """An empty cache: the game's slot on llama-server is erased too, so that the next prompt
        is read whole, as on a fresh server."""
        await self._in_turn(self._forget)

    @property
    def saves_cache(self) -> bool:
        """Whether `save_state` may save anything: a slot of its own on a server that has not said
        it keeps no slot files."""
        return self._slot is not None and self._saves_slots

    async def save_state(self, path: Path) -> int:
        """Save the game's slot on llama-server (`--slot-save-path`) and write its sidecar at
        `path` (slots.py); the sidecar's size, or 0 where the server keeps no slot files."""
        return await self._in_turn(lambda: self._save(path))

    async def restore_state(self, path: Path) -> RestoredState:
        """Restore the game's slot from the file the sidecar at `path` names; on any problem say
        why and leave the cache empty (the next prompt is read whole)."""
        return await self._in_turn(lambda: self._restore(path))

    async def _in_turn(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action` once the replies and slot actions asked for before it are done, and before
        any asked for after it: the slot is never saved, restored or erased mid-reply."""
        previous = self._last

        async def queued() -> T:
            if previous is not None and not previous.done() and previous.get_loop() is asyncio.get_running_loop():
                await asyncio.wait({previous})
            return await action()

        task = asyncio.ensure_future(queued())
        self._last = task
        return await task

    async def _forget(self) -> None:
        self._held, self._window, self._n_keep, self._first_turn = (), (), 0, 0
        if self._slot is not None:
            with contextlib.suppress(RemoteBackendError):  # a server without the slots API: nothing held
                await self._slot_action("erase", None, "erasing its cache")

    async def _save(self, path: Path) -> int:
        if not self._saves_slots or not self._held:
            return 0
        held = list(self._held)
        try:
            previous: str | None = read_sidecar(path).filename
        except SlotFileError:
            previous = None
        filename = slot_filename(self.info.identity, path, previous)
        try:
            answer = await self._slot_action("save", filename, "saving its cache")
        except RemoteBackendError as error:
            if error.status in (404, 405, 501):  # no slots API, or no --slot-save-path: never will
                self._saves_slots = False
                log.info("no slot files on %s: %s", self.info.url, error.message)
            else:  # a failure of this once (a full disk, say): the next save tries again
                log.warning("no slot file for %s: %s", path.name, error.message)
            return 0  # the sidecar still names the last file saved whole
        saved = answer.get("n_saved") if isinstance(answer, dict) else None
        if not isinstance(saved, int) or saved <= 0:
            log.warning("no slot file for %s: the server did not say what it saved", path.name)
            return 0
        state = SlotState(
            server=self.info.identity, build=self._build, filename=filename, n_saved=saved, held=held,
            window=list(self._window), n_keep=self._n_keep, first_turn=self._first_turn,
        )  # fmt: skip
        try:
            return write_sidecar(path, state)
        except OSError as error:  # a full disk: the last sidecar still names its own file, whole
            log.warning("no slot file for %s: %s", path.name, error.strerror)
            return 0

    async def _restore(self, path: Path) -> RestoredState:
        if self._slot is None:
            return RestoredState(0, None)  # no slot of its own to restore into: the server's cache decides
        try:
            state = read_sidecar(path)
            if state.server != self.info.identity:
                raise SlotFileError(f"{path.name} was saved on another model server or model")
            if state.build != self._build:
                raise SlotFileError(f"{path.name} was saved by llama-server build {state.build or '?'}")
            if len(state.held) > self.n_ctx:
                raise SlotFileError(f"{path.name} holds {len(state.held):,} tokens; this context holds {self.n_ctx:,}")
            try:
                answer = await self._slot_action("restore", state.filename, "restoring its cache")
            except RemoteBackendError as error:
                raise SlotFileError(
                    f"the model server could not restore {path.name}'s cache ({error.message})"
                ) from None
            restored = answer.get("n_restored") if isinstance(answer, dict) else None
            if restored != state.n_saved:
                raise SlotFileError(f"the model server restored {restored} tokens of {path.name}'s {state.n_saved}")
        except SlotFileError as problem:
            await self._forget()
            return RestoredState(0, f"{problem}; the story is read again instead.")
        self._held, self._window = tuple(state.held), tuple(state.window)
        self._n_keep, self._first_turn = state.n_keep, state.first_turn
        return RestoredState(len(state.held), None)

    async def _slot_action(self, action: str, filename: str | None, doing: str) -> Any:
        async with async_client(self.config) as client:
            body = {"filename": filename} if filename is not None else {}
            return await self._calls.apost(client, f"/slots/{self._slot}?action={action}", body, doing)

    async def close(self) -> None:
        self.close_blocking()

    def close_blocking(self) -> None:
        self._calls.client.close()

    # -- one reply ------------------------------------------------------------------------------

    async def _run(
        self,
        generation: TaskGeneration,
        prompt: Prompt,
        params: GenerationParams,
        previous: asyncio.Task[GenerationResult] | None,
    ) -> GenerationResult:
        started = time.perf_counter()
        seed = params.sampling.seed if params.sampling.seed is not None else fresh_seed()
        reply = _Reply()
        async with async_client(self.config) as client:
            generation.interruptible = True
            try:
                await self._request(client, generation, prompt, params, seed, previous, reply)
            except asyncio.CancelledError:
                if not generation.cancelled:
                    raise  # the program is closing, not the player cancelling
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                reply.guessed = 0
            except RemoteBackendError:
                if not generation.cancelled:
                    raise
                reply.guessed = 0  # the stream failed as the player cancelled it: what came is theirs
            finally:
                generation.interruptible = False
            tokens, tail = await self._reply_tokens(client, generation)
        ended = time.perf_counter()
        window = reply.window
        if window is not None:
            self._held = tuple(window.tokens) + tokens  # a cancelled reply's prompt was read all the same
        first_text_at = reply.first_text_at or ended
        return GenerationResult(
            text=generation.text,
            tokens=tokens,
            tail_text=tail,
            healed_tokens=0,
            healing_steps=0,
            stop_reason=reply.stop_reason,
            stop_string=reply.stop_string if reply.stop_reason == "stop" else None,
            seed=seed,
            first_turn=window.first_turn if window is not None else self._first_turn,
            evaluated_tokens=reply.evaluated if reply.evaluated is not None else reply.guessed,
            shifted_tokens=sum(len(turn) for turn in prompt.turns[reply.start : window.first_turn]) if window else 0,
            generated_tokens=len(tokens),
            prefill_s=first_text_at - started,
            first_token_s=first_text_at - started,
            decode_s=ended - first_text_at,
        )

    async def _request(
        self,
        client: httpx.AsyncClient,
        generation: TaskGeneration,
        prompt: Prompt,
        params: GenerationParams,
        seed: int,
        previous: asyncio.Task[GenerationResult] | None,
        reply: _Reply,
    ) -> None:
        """Send the window of `prompt` once the replies before it are done, and stream the reply
        into `generation`; `reply` keeps what the server said about it."""
        if generation.cancelled:
            raise asyncio.CancelledError
        if previous is not None and not previous.done() and previous.get_loop() is asyncio.get_running_loop():
            await asyncio.wait({previous})  # one reply at a time, in the order they were asked for
        plan_ctx = self.n_ctx - self.SEAM_TOKENS
        reply.start = self._sticky(prompt)
        window = reply.window = plan_window(prompt, plan_ctx, min(params.max_tokens, plan_ctx // 4) + 1, reply.start)
        pinned, story = await self._prompt_text(client, window)
        max_tokens = max(1, min(params.max_tokens, plan_ctx - len(window.tokens)))
        reply.guessed = len(window.tokens) - common_prefix(self._held, window.tokens)
        self._held = ()  # unknown until this reply is whole
        self._window, self._n_keep, self._first_turn = tuple(window.tokens), window.n_keep, window.first_turn
        model, grammar, slot = self.info.model, self._grammar, self._slot
        if self.config.api == "chat":
            body = chat_body(
                model, pinned, story, params, seed, max_tokens, grammar=grammar, slot=slot, prefill=self._prefill
            )
            reply.echo = story if self._prefill else ""  # llama-server answers with the message it went on with
        else:
            body = completion_body(model, pinned + story, params, seed, max_tokens, grammar=grammar, slot=slot)
        try:
            await self._stream(client, generation, body, reply)
        except GrammarRefused:
            # The story checks every line it is given, so a server without grammars still plays;
            # it is only told once.
            self._grammar = False
            body.pop("grammar")
            await self._stream(client, generation, body, reply)
        reply.stop_reason = _stop_reason(reply, params)

    async def _reply_tokens(self, client: httpx.AsyncClient, generation: TaskGeneration) -> tuple[tuple[int, ...], str]:
        """The reply's tokens, and the end of its text they do not cover (`tail_text`).

        A server's streamed text does not carry its tokens, so the reply is tokenized (no request
        when the text is known; else on the tokenizer's short timeout). A cancelled reply is the
        player's to keep, as on the in-process engine: if the server cannot tokenize it (it may
        be what stalled), its text comes back with no tokens, all of it the tail, for the story to
        tokenize as it keeps it, and never an error."""
        try:
            return tuple(await self._tokenizer.atokenize(client, generation.text)), ""
        except RemoteBackendError:
            if not generation.cancelled:
                raise
            return (), generation.text

    async def _stream(
        self, client: httpx.AsyncClient, generation: TaskGeneration, body: dict[str, Any], reply: _Reply
    ) -> None:
        async with contextlib.aclosing(stream_completion(client, self._calls, body)) as chunks:
            async for chunk in chunks:
                self._take(chunk, generation, reply)

    @staticmethod
    def _take(chunk: Chunk, generation: TaskGeneration, reply: _Reply) -> None:
        chunk = replace(chunk, text=_without_echo(chunk.text, reply))
        if chunk.text:
            reply.first_text_at = reply.first_text_at or time.perf_counter()
            generation.emit(chunk.text)
        reply.finish = chunk.finish_reason or reply.finish
        reply.stop_string = chunk.stop_string or reply.stop_string
        reply.evaluated = chunk.evaluated if chunk.evaluated is not None else reply.evaluated

    async def _prompt_text(self, client: httpx.AsyncClient, window: Window) -> tuple[str, str]:
        """The window as text, the pinned block and the story after it, turn by turn: each turn's
        text is remembered, so only new ones cost."""
        tokens = window.tokens
        bounds = sorted({0, window.n_keep, *window.turn_starts, len(tokens)})
        pinned, story = "", ""
        for a, b in zip(bounds, bounds[1:]):
            if b > a:
                text = await self._tokenizer.adetokenize(client, tokens[a:b])
                pinned, story = (pinned + text, story) if b <= window.n_keep else (pinned, story + text)
        return pinned, story

    def _sticky(self, prompt: Prompt) -> int:
        """Keep the window's start while the server still holds that turn first; else start afresh."""
        turn = prompt.turns[self._first_turn] if self._first_turn < len(prompt.turns) else None
        n_keep, sent = self._n_keep, self._window
        if turn and sent[:n_keep] == prompt.pinned and sent[n_keep : n_keep + len(turn)] == turn:
            return self._first_turn
        return 0


def _without_echo(text: str, reply: _Reply) -> str:
    """`text` without the prefilled story the server repeats before its reply (llama-server sends the
    whole assistant message, prefill included). Text that could still be the story is held back; once
    it is not (a server that does not repeat it, or a reply that began like the story), all of what
    was held comes out, so nothing of a real reply is lost."""
    if not reply.echo:
        return text
    seen = reply.held + text
    if reply.echo.startswith(seen) and len(seen) < len(reply.echo):
        reply.held = seen
        return ""
    story, reply.echo, reply.held = reply.echo, "", ""
    return seen[len(story) :] if seen.startswith(story) else seen


def _chosen_slot(asked: int | None, total: Any, url: str) -> int | None:
    """The llama-server slot the game keeps: the one asked for (`simularity host` gives each game its
    own) if the server has it, else slot 0 of a one-slot server; None where the server hands slots
    out itself (several and none asked for, or not llama-server), and then nothing is saved there."""
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        if asked is not None:
            log.info("%s says nothing of slots: slot %d is not kept", url, asked)
        return None
    if asked is not None and asked < total:
        return asked
    if asked is not None:
        log.warning("%s has %d slot(s), not slot %d: %s", url, total, asked, "slot 0" if total == 1 else "its choice")
    elif total > 1:
        log.info("%s has %d slots and none was asked for: a save keeps no cache there", url, total)
    return 0 if total == 1 else None


def _served_model(answer: Any, url: str) -> tuple[str, int | None]:
    """The first model in a /v1/models answer, and the context it reports (vLLM, SGLang) if any."""
    data = answer.get("data") if isinstance(answer, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    if not isinstance(first, dict) or not isinstance(first.get("id"), str):
        raise garbage(url, "asking which model it serves (GET /v1/models)", sample(answer))
    length = first.get("max_model_len")
    return first["id"], length if isinstance(length, int) and length > 0 else None


def _llama_server_props(client: httpx.Client) -> dict[str, Any]:
    """llama-server's GET /props; empty where the server has no such page."""
    try:
        response = client.get("/props")
        props = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return {}
    return props if isinstance(props, dict) else {}


def _props_context(props: dict[str, Any]) -> int | None:
    """llama-server's context per slot; None where it does not say."""
    settings = props.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


# What llama-server applies to a model whose GGUF has no chat template (llama.cpp's common/chat.cpp),
# and reports in /props as if it were the model's: a base model (the embedded one) plays raw instead.
LLAMA_SERVER_FALLBACK_TEMPLATE = (
    "{%- for message in messages -%}\n  {{- '<|im_start|>' + message.role + '\n' + message.content + "
    "'<|im_end|>\n' -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)


def _server_frame(choice: str, props: dict[str, Any], url: str) -> ChatFrame:
    """The chat frame for `[model] template = choice` on a server: "auto" renders the template
    llama-server says it applies (in the same sandbox as a GGUF's), with its BOS and EOS texts,
    unless that is its own fallback for a model without one (whatever its whitespace)."""
    template, bos, eos = (props.get(key) for key in ("chat_template", "bos_token", "eos_token"))
    fallback = isinstance(template, str) and template.split() == LLAMA_SERVER_FALLBACK_TEMPLATE.split()
    return chosen_frame(
        choice,
        template if isinstance(template, str) and not fallback else None,
        bos=bos if isinstance(bos, str) else "",
        eos=eos if isinstance(eos, str) else "",
        source=f"the model server at {url}",
    )


def _stop_reason(reply: _Reply, params: GenerationParams) -> StopReason:
    if reply.finish == "length":
        return "length"
    if reply.stop_string is not None:
        return "stop"
    # "stop" covers both the end of text and a stop string on most servers, which do not say which.
    return "stop" if reply.finish == "stop" and params.stop else "eos"
