"""The asyncio face of the engine: load a model, queue generations, stream their text, cancel.

One dedicated thread (a single-worker executor) owns the llama.cpp model and context, so requests
run one after another in the order they were made, never concurrently on one context. The event
loop only ever waits on futures: decoding releases the GIL, and text crosses over with
`call_soon_threadsafe`, one call per streamed piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .chat_template import ChatFrame
from .config import GenerationParams, ModelConfig
from .heap import release_freed_memory
from .prompt import Prompt
from .results import GenerationResult, ModelInfo, RestoredState
from .worker import EngineWorker

_END = object()
IDLE_BEFORE_TRIM_S = 1.0


class Generation:
    """One queued or running generation: iterate it for text pieces, await `result()` at the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pieces: asyncio.Queue[object] = asyncio.Queue()
        self._result: asyncio.Future[GenerationResult] = loop.create_future()
        self.cancel_event = threading.Event()
        self.prefill = 0.0  # how much of the prompt's new part has been read (0 to 1), while it is read

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
        self._call(self._pieces.put_nowait, text)

    def _settle(self, result: GenerationResult | None, error: BaseException | None) -> None:
        self._call(self._finish, result, error)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancel_event.set()

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

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`; keep `special=False` for anything a player or an author typed."""
        return self._worker.model.tokenize(text, special=special, add_bos=add_bos)

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
                generation._settle(result, None)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing more to tidy
                loop.call_soon_threadsafe(self._trim_when_idle, loop)

        self._executor.submit(job)
        return generation

    def _trim_when_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once no generation has come for a while (a player reading, typing), hand the memory the
        grammar sampler freed back to the system (heap.py). Not between the steps of one turn:
        memory handed back is paid for again in page faults by the next generation."""
        self._cancel_trim()
        self._trim = loop.call_later(IDLE_BEFORE_TRIM_S, self._executor.submit, release_freed_memory)

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
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._worker.restore_state, path)

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
