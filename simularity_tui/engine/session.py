"""The asyncio face of the engine: load a model, queue generations, stream their text, cancel.

One dedicated thread (a single-worker executor) owns the llama.cpp model and context, so requests
run one after another in the order they were made, never concurrently on one context. The event
loop only ever waits on futures: decoding releases the GIL, and text crosses over with
`call_soon_threadsafe`, one call per streamed piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .chat_template import ChatFrame
from .config import GenerationParams, ModelConfig, SamplingParams
from .context_window import common_prefix
from .heap import release_freed_memory
from .kv_state import StateFileError, read_header
from .native import DecodeError
from .prompt import Prompt
from .results import GenerationResult, ModelInfo, RestoredState
from .resume_path import ResumeChoice, choose_resume, prefill_rate, probe_plan
from .worker import EngineWorker

_END = object()
IDLE_BEFORE_TRIM_S = 1.0
# How long the engine waits for the first piece of a generation to be taken (below): the event
# loop's usual answer is well under a millisecond; a loop busy elsewhere is not waited for longer.
FIRST_PIECE_WAIT_S = 0.02
log = logging.getLogger("simularity.engine")


class Generation:
    """One queued or running generation: iterate it for text pieces, await `result()` at the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pieces: asyncio.Queue[object] = asyncio.Queue()
        self._result: asyncio.Future[GenerationResult] = loop.create_future()
        self.cancel_event = threading.Event()
        self.prefill = 0.0  # how much of the prompt's new part has been read (0 to 1), while it is read
        self._first_piece_sent = False

    def cancel(self) -> None:
        """Stop as soon as possible (a running decode aborts between graph nodes)."""
        self.cancel_event.set()

    async def result(self) -> GenerationResult:
        return await asyncio.shield(self._result)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[str]:
        try:
            while (piece := await self._pieces.get()) is not _END:
                assert isinstance(piece, str)
                yield piece
        finally:
            if not self._result.done():  # the consumer went away early: nobody wants the rest
                self.cancel()
        if (error := self._result.exception()) is not None:
            raise error

    # Called on the engine thread.
    def _progress(self, done: int, total: int) -> None:
        self._call(setattr, self, "prefill", done / total if total else 1.0)

    def _emit(self, text: str) -> None:
        if self._first_piece_sent:
            self._call(self._pieces.put_nowait, text)
            return
        # The first piece is taken before the engine decodes on: its threads then busy every core,
        # and on a machine with as many cores as threads (two) the event loop would wait for a
        # scheduler's time slice (3-10 ms, measured) before the line's first text could show.
        self._first_piece_sent = True
        taken = threading.Event()
        if self._call(self._put_first, text, taken):
            taken.wait(FIRST_PIECE_WAIT_S)

    def _put_first(self, text: str, taken: threading.Event) -> None:
        self._pieces.put_nowait(text)
        # Queued after the consumer's step that the piece wakes: set once it has handled the piece.
        self._loop.call_soon(taken.set)

    def _settle(self, result: GenerationResult | None, error: BaseException | None) -> None:
        self._call(self._finish, result, error)

    def _call(self, callback: Callable[..., object], *args: object) -> bool:
        """Run `callback(*args)` on the event loop; False when it is closed (nobody listens any more)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            self.cancel_event.set()
            return False
        return True

    def _finish(self, result: GenerationResult | None, error: BaseException | None) -> None:
        if error is not None:
            self._result.set_exception(error)
            self._result.exception()  # mark as retrieved: the stream re-raises it
        else:
            assert result is not None
            self._result.set_result(result)
        self._pieces.put_nowait(_END)


class LlamaSession:
    """A model loaded in-process, with the exact token list of its KV cache."""

    def __init__(self, worker: EngineWorker, executor: ThreadPoolExecutor) -> None:
        self._worker = worker
        self._executor = executor
        self.info: ModelInfo = worker.info
        self._trim: asyncio.TimerHandle | None = None
        self._pending = 0  # generations asked for and not ended: a trim waits for none to be left
        self._pending_lock = threading.Lock()  # asked on the loop's thread, ended on the engine's
        # What resuming weighs (resume_path.py), measured on this machine as the session goes:
        self.prefill_tokens_per_s: float | None = None  # the best prefill of MIN_MEASURED_TOKENS or more
        self.restore_bytes_per_s: float | None = None  # the fastest KV state file restore

    @classmethod
    async def open(cls, config: ModelConfig) -> LlamaSession:
        """Load on the engine thread, so the event loop keeps running during the load."""
        executor = _engine_executor()
        try:
            worker = await asyncio.get_running_loop().run_in_executor(executor, EngineWorker.load, config)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(worker, executor)

    @classmethod
    def open_blocking(cls, config: ModelConfig) -> LlamaSession:
        """Load from synchronous code (benchmarks, command-line tools)."""
        executor = _engine_executor()
        try:
            worker = executor.submit(EngineWorker.load, config).result()
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(worker, executor)

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def chat_frame(self) -> ChatFrame:
        """How the story is framed for this model (chat_template.py)."""
        return self.info.chat_frame

    @property
    def kv_tokens(self) -> tuple[int, ...]:
        """The tokens whose KV the context holds now (a snapshot)."""
        return tuple(self._worker.tokens)

    @property
    def aside_room(self) -> int:
        """The context's cells the story does not hold (its `n_ctx` and the cells beside it); 0 where
        the engine keeps none aside (native.py `NativeContext._aside_for`)."""
        context = self._worker.context
        return context.cells - len(self._worker.tokens) if context.aside else 0

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`; keep `special=False` for anything a player or an author typed."""
        return self._worker.model.tokenize(text, special=special, add_bos=add_bos)

    async def tokens_ahead(self, build: Callable[[], object]) -> None:
        return None  # tokenized in-process, in microseconds: nothing to fetch ahead

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._worker.model.detokenize(tokens).decode("utf-8", errors="replace")

    @property
    def bos_token(self) -> int | None:
        return self._worker.model.bos if self._worker.model.add_bos else None

    def generate(self, prompt: Prompt | Sequence[int], params: GenerationParams) -> Generation:
        """Queue a generation that continues `prompt`; it starts when those before it are done.

        A plain token list is one turn with nothing pinned: the context must hold it whole.
        """
        loop = asyncio.get_running_loop()
        generation = Generation(loop)
        with self._pending_lock:
            self._pending += 1
        self._cancel_trim()
        if not isinstance(prompt, Prompt):
            prompt = Prompt.plain(prompt)

        def job() -> None:
            try:
                result = self._worker.generate(
                    prompt, params, generation._emit, generation.cancel_event, generation._progress
                )
            except BaseException as error:  # delivered to the awaiting side, not lost in the thread
                generation._settle(None, error)
            else:
                self._note_prefill(result)
                generation._settle(result, None)
            finally:
                with self._pending_lock:
                    self._pending -= 1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing more to tidy
                loop.call_soon_threadsafe(self._ended, loop)

        self._executor.submit(job)
        return generation

    def _note_prefill(self, result: GenerationResult) -> None:
        """Keep the best prefill speed seen (shorter prefills, with more overhead, read slower)."""
        rate = prefill_rate(result.evaluated_tokens, result.prefill_s) if result.stop_reason != "cancelled" else None
        if rate is not None and rate > (self.prefill_tokens_per_s or 0.0):
            self.prefill_tokens_per_s = rate

    def _ended(self, loop: asyncio.AbstractEventLoop) -> None:
        """A generation ended: once none is left and none has come for a while (a player reading,
        typing), hand the memory the grammar sampler freed back to the system (heap.py). Not
        between the steps of one turn: memory handed back is paid for again in page faults by the
        next generation. Not while another runs or waits either (the loop may hear of this end
        after the next generation began): the trim would wait behind it on the engine thread and
        run just before the one after it, a player's turn, 10-17 ms before its first token
        (measured in `bench story`)."""
        if not self._pending:
            self._cancel_trim()
            self._trim = loop.call_later(IDLE_BEFORE_TRIM_S, self._executor.submit, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        """On the engine thread: trim, unless a generation was asked for since the trim was set."""
        if not self._pending:
            release_freed_memory()

    def _cancel_trim(self) -> None:
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    async def resize(self, n_ctx: int) -> int:
        """A context of `n_ctx` tokens (or as many as the model and the memory allow) on the same
        weights, in place of this one: no reload. The KV starts empty. Returns the new size."""
        size = await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.resize, n_ctx)
        self.info = self._worker.info
        return size

    async def reset(self) -> None:
        """Forget what the KV holds (a new game, or a measurement that must start cold)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.reset)

    async def save_state(self, path: Path) -> int:
        """Write the KV state beside a save (after any queued generation); returns its size."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.save_state, path)

    async def restore_state(self, path: Path) -> RestoredState:
        """Load a KV state file; a bad one is reported in `warning`, and the story re-evaluated."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_restore, path)

    def _timed_restore(self, path: Path) -> RestoredState:
        """On the engine thread: restore, and note how fast a state file is read in."""
        started = time.perf_counter()
        restored = self._worker.restore_state(path)
        elapsed = time.perf_counter() - started
        if restored.tokens and elapsed > 0:
            with contextlib.suppress(OSError):
                rate = path.stat().st_size / elapsed
                self.restore_bytes_per_s = max(rate, self.restore_bytes_per_s or 0.0)
        return restored

    async def resume_choice(self, path: Path) -> ResumeChoice | None:
        """Whether restoring the state file `path` or re-evaluating its window is the faster way to
        resume (resume_path.py); None when there is no file of this model and runtime to weigh
        (then restore it, and the player hears why it cannot be used).

        With no prefill speed measured yet and a restore long enough to matter, the window's first
        tokens are evaluated once and timed, cut off as soon as re-evaluating can no longer win."""
        try:
            size = path.stat().st_size
            tokens = await asyncio.get_running_loop().run_in_executor(None, self._header_tokens, path)
        except (OSError, StateFileError):
            return None
        if len(tokens) >= self.n_ctx or any(token >= self._worker.model.n_vocab for token in tokens):
            return None  # restoring refuses it, and says why
        held = common_prefix(self.kv_tokens, tokens)  # the KV keeps these either way: only the rest is read
        choice = self._choose(size, len(tokens) - held)
        probe = probe_plan(choice)
        if probe is None:
            return choice
        count, within_s = probe
        read = await self._probe_prefill(tokens[: held + count], within_s)
        return self._choose(size, len(tokens) - held - read)

    def _header_tokens(self, path: Path) -> list[int]:
        return read_header(path, model=self.info.identity).tokens

    def _choose(self, state_bytes: int, tokens: int) -> ResumeChoice:
        return choose_resume(
            state_bytes,
            tokens,
            restore_bytes_per_s=self.restore_bytes_per_s,
            prefill_tokens_per_s=self.prefill_tokens_per_s,
        )

    async def _probe_prefill(self, tokens: list[int], within_s: float) -> int:
        """Evaluate `tokens` (the KV keeps what it holds of them) and time it, unless it takes longer
        than `within_s`; returns how many the KV holds now that it did not before (0 if cut off)."""
        greedy = GenerationParams(sampling=SamplingParams(temperature=0.0, seed=0), max_tokens=1, heal=False)
        generation = self.generate(tokens, greedy)
        deadline = asyncio.get_running_loop().call_later(within_s, generation.cancel)
        try:
            result = await generation.result()
        except DecodeError as error:  # the KV holds a prefix of `tokens`; restoring starts afresh
            log.warning("resume: a prefill to time failed (%s); restoring", error)
            return 0
        finally:
            deadline.cancel()
        if result.stop_reason == "cancelled":
            log.info(
                "resume: a prefill of %d tokens took over %.0f ms, too slow to beat a restore",
                len(tokens),
                within_s * 1000,
            )
            return 0
        return result.evaluated_tokens

    async def close(self) -> None:
        self._cancel_trim()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.close)
        self._executor.shutdown(wait=True)

    def close_blocking(self) -> None:
        self._cancel_trim()
        self._executor.submit(self._worker.close).result()
        self._executor.shutdown(wait=True)


def _engine_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-engine")
