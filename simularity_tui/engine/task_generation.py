"""A generation written by an asyncio task and streamed through a queue: the text pieces reach the
reader as the task emits them, `cancel()` sets a flag the task checks (or interrupts it, while it
says it may be), and `result()` is the task's own. The remote session writes its replies this way;
so does the test suite's scripted session (tests/fake_model.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from .results import GenerationResult


class TaskGeneration:
    """One reply being streamed: iterate it for text, `cancel()` it, await `result()` at the end."""

    def __init__(self) -> None:
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[GenerationResult] | None = None
        self.interruptible = False  # while True, cancelling interrupts the task (its session says when)
        self.cancelled = False
        self.prefill = 0.0  # how far the prompt is read, where the writer can tell; 1.0 once the reply begins
        self.text = ""

    @property
    def task(self) -> asyncio.Task[GenerationResult]:
        """The task writing the reply (started by `start`): a session waits on it before its next one."""
        assert self._task is not None
        return self._task

    def start(self, run: Callable[[TaskGeneration], Coroutine[Any, Any, GenerationResult]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._main(run))
        self._task.add_done_callback(_retrieved)

    async def _main(self, run: Callable[[TaskGeneration], Coroutine[Any, Any, GenerationResult]]) -> GenerationResult:
        try:
            return await run(self)
        finally:
            self._pieces.put_nowait(None)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Only while the request runs: a task cancelled before its first step never runs its body
        # (nor its `finally`), and one cancelled while it tokenizes the reply would lose the result.
        # Outside that part the task sees the flag instead.
        if self.interruptible and self._task is not None and not self._task.done():
            self._task.cancel()

    async def result(self) -> GenerationResult:
        assert self._task is not None
        return await asyncio.shield(self._task)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[str]:
        assert self._task is not None
        try:
            while (piece := await self._pieces.get()) is not None:
                yield piece
        finally:
            if not self._task.done():  # the consumer went away early: nobody wants the rest
                self.cancel()
        await asyncio.wait({self._task})
        if not self._task.cancelled() and (error := self._task.exception()) is not None:
            raise error

    def emit(self, text: str) -> None:
        self.prefill = 1.0
        self.text += text
        self._pieces.put_nowait(text)


def _retrieved(task: asyncio.Task[GenerationResult]) -> None:
    """Mark a failure as seen: the stream and `result()` report it to whoever is listening."""
    if not task.cancelled():
        task.exception()
