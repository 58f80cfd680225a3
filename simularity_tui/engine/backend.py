"""What the story and the screen need of a model, whichever backend runs it.

`LlamaSession` (the model in-process) and `RemoteSession` (an OpenAI-compatible server) both fit
`ModelSession`; the story layer and the UI are typed against it, never against either class, so a
game plays the same on both. Structural typing (Protocol) keeps the backends free of a common base.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Protocol

from .chat_template import ChatFrame
from .config import GenerationParams
from .prompt import Prompt
from .results import GenerationResult, RestoredState


class BackendInfo(Protocol):
    """What a save and the status line say about the model."""

    @property
    def identity(self) -> str:
        """A fingerprint of the model and its tokenizer: saves keep token ids only for the same one."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def n_ctx(self) -> int: ...


class GenerationStream(Protocol):
    """One generation: iterate it for text pieces, `cancel()` it, await `result()` at the end."""

    @property
    def prefill(self) -> float:
        """How much of the prompt's new part has been read (0 to 1), where the backend can tell."""
        ...

    def cancel(self) -> None: ...

    async def result(self) -> GenerationResult: ...

    def __aiter__(self) -> AsyncIterator[str]: ...


class ModelSession(Protocol):
    @property
    def info(self) -> BackendInfo: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def kv_tokens(self) -> tuple[int, ...]:
        """The tokens the model holds in its context now, as far as this side knows."""
        ...

    @property
    def bos_token(self) -> int | None:
        """The token a prompt must start with, or None when the backend adds it itself."""
        ...

    @property
    def aside_room(self) -> int:
        """The tokens a generation aside (`GenerationParams.aside`) may read and write now, beside
        what the context holds; 0 where the backend writes none (a model server: its slot is one
        sequence)."""
        ...

    @property
    def chat_frame(self) -> ChatFrame:
        """The text before and after the pinned block ([model] template; chat_template.py)."""
        ...

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    async def tokens_ahead(self, build: Callable[[], object]) -> None:
        """Tokenize now, without blocking the event loop, what `build` would tokenize, so that the
        same code run next finds its tokens at once. `build` may run in a thread alongside the game:
        it must change nothing the game relies on (caches it fills with what the real run would are
        fine). Only a model on a server has anything to do: in-process tokenizing takes microseconds."""
        ...

    def generate(self, prompt: Prompt | Sequence[int], params: GenerationParams) -> GenerationStream: ...

    async def reset(self) -> None: ...

    async def save_state(self, path: Path) -> int: ...

    async def restore_state(self, path: Path) -> RestoredState: ...

    async def close(self) -> None: ...

    def close_blocking(self) -> None: ...
