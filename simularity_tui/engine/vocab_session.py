"""A model's vocabulary alone: it tokenizes exactly as the model does, in a fraction of a second
and a few MiB, and generates nothing. For tools that show what a model would read without running
it (`simularity prompt`), where loading the weights and a context would only cost time and memory.

It fits `ModelSession` so the story can build its prompt on it; `generate` refuses. Its KV is what
a KV state file says it holds (`restore_state` reads the file's token list, not the state), so
that a tool can tell what a resumed game would reuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .backend import GenerationStream
from .chat_template import ChatFrame, model_frame
from .config import GenerationParams, ModelConfig
from .errors import ChatTemplateError, ModelLoadError
from .gguf_file import inspect_gguf
from .kv_state import StateFileError, model_identity, read_state
from .prompt import Prompt
from .results import ModelInfo, RestoredState

if TYPE_CHECKING:
    from .native import NativeModel


class VocabSession:
    def __init__(self, model: NativeModel, info: ModelInfo) -> None:
        self._model = model
        self.info = info
        self._held: tuple[int, ...] = ()

    @classmethod
    def open(cls, config: ModelConfig) -> VocabSession:
        """The vocabulary of `config.path`; `config.n_ctx` is the context the session says it has."""
        gguf = inspect_gguf(config.path)  # a missing, foreign or truncated file, said in words
        from .native import NativeModel, problems_mark, problems_since  # llama.cpp: only for a model that is there

        mark = problems_mark()
        try:
            model = NativeModel(str(config.path), 0, vocab_only=True)
        except ModelLoadError:
            why = problems_since(mark) or "no reason given"
            raise ModelLoadError(
                f"llama.cpp could not read the vocabulary of {config.path}: {why}",
                hint="The model may need a newer llama.cpp (upgrade llama-cpp-python) or is not a text model.",
                path=config.path,
            ) from None
        info = ModelInfo(
            path=config.path,
            name=gguf.name,
            description=f"{gguf.architecture} (vocabulary only)",
            identity=model_identity(config.path),
            n_ctx=config.n_ctx,
            n_ctx_train=gguf.context_length or 0,
            n_threads=0,
            context_shift=config.context_shift,
            n_vocab=model.n_vocab,
        )
        try:
            info = replace(info, chat_frame=model_frame(config.template, gguf, model))
        except ChatTemplateError:
            model.close()
            raise
        return cls(model, info)

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def chat_frame(self) -> ChatFrame:
        return self.info.chat_frame

    @property
    def kv_tokens(self) -> tuple[int, ...]:
        return self._held

    @property
    def bos_token(self) -> int | None:
        return self._model.bos if self._model.add_bos else None

    @property
    def aside_room(self) -> int:
        return 0  # it writes nothing at all

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        return self._model.tokenize(text, special=special, add_bos=add_bos)

    async def tokens_ahead(self, build: Callable[[], object]) -> None:
        return None  # tokenized in-process, in microseconds: nothing to fetch ahead

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._model.detokenize(tokens).decode("utf-8", errors="replace")

    def generate(self, prompt: Prompt | Sequence[int], params: GenerationParams) -> GenerationStream:
        raise ModelLoadError(
            f"{self.info.path.name} is loaded as a vocabulary only: it cannot write",
            hint="Open it as a LlamaSession to generate.",
        )

    async def reset(self) -> None:
        self._held = ()

    async def save_state(self, path: Path) -> int:
        return 0  # nothing to save: no KV

    async def restore_state(self, path: Path) -> RestoredState:
        """Take the token list of a KV state file as what the KV holds (the state itself is not read)."""
        try:
            header, _payload = read_state(path, model=self.info.identity)
        except StateFileError as problem:
            return RestoredState(0, f"{problem}; the story would be read again instead.")
        if len(header.tokens) >= self.n_ctx:
            return RestoredState(0, f"{path.name} holds more tokens than this context; the story would be read again.")
        self._held = tuple(header.tokens)
        return RestoredState(len(self._held), None)

    async def close(self) -> None:
        self._model.close()

    def close_blocking(self) -> None:
        self._model.close()
