"""The engine thread's side: one model, one context, and the exact list of tokens in its KV.

Only the session's single worker thread calls into this class, so nothing here locks. The token
list `tokens` always equals what the KV holds at positions 0..len-1; every change to the KV is
mirrored in it, which is what lets a new prompt evaluate only the tokens it does not share.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from .config import GenerationParams, ModelConfig
from .errors import ContextSizeError, ModelLoadError, OutOfMemoryError, PromptTooLongError
from .gguf_file import inspect_gguf
from .memory import check_fits
from .native import DecodeAborted, NativeContext, NativeModel, problems_since, recent_problems
from .sampling import SamplerChain, fresh_seed
from .text_stream import TextAssembler

StopReason = Literal["eos", "stop", "length", "context_full", "cancelled"]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    description: str  # llama.cpp's one-line description, e.g. "gemma3 270M Q4_K - Medium"
    n_ctx: int
    n_ctx_train: int
    n_threads: int


@dataclass(frozen=True)
class GenerationResult:
    text: str  # what was streamed: the generated text up to, not including, a stop string
    tokens: tuple[int, ...]  # generated tokens whose text lies wholly inside `text`
    tail_text: str  # the end of `text` no token of `tokens` covers (one straddled the stop string)
    stop_reason: StopReason
    stop_string: str | None
    seed: int
    prompt_tokens: int
    evaluated_tokens: int  # prompt tokens that were not already in the KV
    generated_tokens: int
    prefill_s: float
    first_token_s: float  # from the start of the job (not the queue) to the first sampled token
    decode_s: float  # from the first sampled token to the last

    @property
    def tokens_per_second(self) -> float:
        return (self.generated_tokens - 1) / self.decode_s if self.generated_tokens > 1 and self.decode_s else 0.0


Emit = Callable[[str], None]


class EngineWorker:
    def __init__(self, model: NativeModel, context: NativeContext, info: ModelInfo) -> None:
        self.model = model
        self.context = context
        self.info = info
        self.tokens: list[int] = []

    @classmethod
    def load(cls, config: ModelConfig) -> EngineWorker:
        """Check the file, the context size and the memory, then load; every failure is explained."""
        gguf = inspect_gguf(config.path)
        if gguf.context_length and config.n_ctx > gguf.context_length:
            raise _context_too_large(config, gguf.context_length)
        check_fits(
            config.path,
            weights_bytes=gguf.size if config.n_gpu_layers == 0 else 0,
            kv_bytes=(gguf.kv_bytes_per_token or 0) * config.n_ctx,
            n_ctx=config.n_ctx,
        )
        mark = len(recent_problems)
        try:
            model = NativeModel(str(config.path), config.n_gpu_layers)
        except ModelLoadError:
            raise _load_failure(config.path, "load the model", problems_since(mark)) from None
        if config.n_ctx > model.n_ctx_train:
            model.close()
            raise _context_too_large(config, model.n_ctx_train)
        threads = config.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        try:
            context = NativeContext(model, n_ctx=config.n_ctx, n_batch=config.n_batch, n_threads=threads)
        except ModelLoadError:
            model.close()
            raise _load_failure(config.path, "create its context", problems_since(mark)) from None
        info = ModelInfo(
            path=config.path,
            name=gguf.name,
            description=model.description,
            n_ctx=context.n_ctx,
            n_ctx_train=model.n_ctx_train,
            n_threads=threads,
        )
        return cls(model, context, info)

    def close(self) -> None:
        self.context.close()
        self.model.close()

    def generate(
        self, prompt: Sequence[int], params: GenerationParams, emit: Emit, cancel: threading.Event
    ) -> GenerationResult:
        started = time.perf_counter()
        seed = params.sampling.seed if params.sampling.seed is not None else fresh_seed()
        if not prompt:
            raise ValueError("a prompt needs at least one token")
        if len(prompt) >= self.context.n_ctx:
            raise PromptTooLongError(
                f"The prompt has {len(prompt):,} tokens and the context holds {self.context.n_ctx:,}.",
                hint="Raise n_ctx or shorten the prompt.",
            )
        self.context.abort.watch(cancel)
        evaluated = self._evaluate_prompt(prompt, cancel)
        prefill_s = time.perf_counter() - started
        if evaluated is None:
            return self._result("", [], TextAssembler(), "cancelled", seed, prompt, 0, prefill_s, 0.0, 0.0, 0)

        sampler = SamplerChain(self.model, params.sampling, seed, history=prompt, grammar=params.grammar)
        assembler = TextAssembler(params.stop)
        generated: list[int] = []
        reason: StopReason = "length"
        first_token_at = 0.0
        try:
            while len(generated) < params.max_tokens:
                if cancel.is_set():
                    reason = "cancelled"
                    break
                token = sampler.sample(self.context)
                if not first_token_at:
                    first_token_at = time.perf_counter()
                if self.model.is_end_of_generation(token):
                    reason = "eos"
                    break
                generated.append(token)
                if text := assembler.feed(self.model.piece(token)):
                    emit(text)
                if assembler.stop_string is not None:
                    reason = "stop"
                    break
                if len(generated) == params.max_tokens:
                    break  # the last token is evaluated by the next prompt that contains it
                if len(self.tokens) >= self.context.n_ctx:
                    reason = "context_full"
                    break
                try:
                    self.context.decode([token], len(self.tokens))
                except DecodeAborted:
                    reason = "cancelled"
                    break
                self.tokens.append(token)
        finally:
            sampler.close()
        if text := assembler.finish():
            emit(text)
        ended = time.perf_counter()
        return self._result(
            assembler.text, generated, assembler, reason, seed, prompt, evaluated, prefill_s,
            (first_token_at or ended) - started, ended - (first_token_at or ended), len(generated),
        )

    def _evaluate_prompt(self, prompt: Sequence[int], cancel: threading.Event) -> int | None:
        """Bring the KV to hold `prompt`, evaluating only what it does not share with the KV.

        Returns how many tokens were evaluated, or None when cancelled (the KV then holds a prefix
        of the prompt, and `tokens` says which).
        """
        reuse = 0
        for kept, wanted in zip(self.tokens, prompt):
            if kept != wanted:
                break
            reuse += 1
        reuse = min(reuse, len(prompt) - 1)  # the last prompt token is re-evaluated for its logits
        if reuse < len(self.tokens):
            if not self.context.forget_from(reuse):
                self.context.clear()
                reuse = 0
            del self.tokens[reuse:]
        if cancel.is_set():
            return None
        try:
            self.context.decode(prompt[reuse:], reuse)
        except DecodeAborted as aborted:
            self.tokens.extend(prompt[reuse : aborted.kept])
            return None
        self.tokens.extend(prompt[reuse:])
        return len(prompt) - reuse

    def _result(
        self,
        text: str,
        generated: list[int],
        assembler: TextAssembler,
        reason: StopReason,
        seed: int,
        prompt: Sequence[int],
        evaluated: int,
        prefill_s: float,
        first_token_s: float,
        decode_s: float,
        n_generated: int,
    ) -> GenerationResult:
        tokens, tail = self._split_at_text_end(generated, text) if reason == "stop" else (generated, "")
        return GenerationResult(
            text=text,
            tokens=tuple(tokens),
            tail_text=tail,
            stop_reason=reason,
            stop_string=assembler.stop_string,
            seed=seed,
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=n_generated,
            prefill_s=prefill_s,
            first_token_s=first_token_s,
            decode_s=decode_s,
        )

    def _split_at_text_end(self, generated: list[int], text: str) -> tuple[list[int], str]:
        """The longest run of `generated` whose bytes fit inside `text`, and the text left over."""
        budget = len(text.encode("utf-8"))
        count, used = 0, 0
        for token in generated:
            size = len(self.model.piece(token))
            if used + size > budget:
                break
            used += size
            count += 1
        while count:
            try:
                covered = self.model.detokenize(generated[:count]).decode("utf-8")
                return generated[:count], text[len(covered) :]
            except UnicodeDecodeError:  # the run ends inside a character: give that token back
                count -= 1
        return [], text


def _context_too_large(config: ModelConfig, trained: int) -> ContextSizeError:
    return ContextSizeError(
        f"n_ctx = {config.n_ctx:,} is larger than {config.path.name} was trained for ({trained:,} tokens).",
        hint=f"Set n_ctx to {trained:,} or less (--n-ctx, or [model] n_ctx in settings.toml).",
        path=config.path,
    )


def _load_failure(path: Path, step: str, problems: str) -> Exception:
    lowered = problems.lower()
    if "alloc" in lowered or "memory" in lowered:
        return OutOfMemoryError(
            f"Not enough memory to {step} {path.name}: {problems}",
            hint="Lower n_ctx, close other programs, or choose a smaller model.",
            path=path,
        )
    return ModelLoadError(
        f"llama.cpp could not {step} {path}: {problems or 'no reason given'}",
        hint="The model may need a newer llama.cpp (upgrade llama-cpp-python) or is not a text model.",
        path=path,
    )
