"""The engine thread's side: one model, one context, a KV cache that shifts, and generation.

Only the session's single worker thread calls into this class, so nothing here locks. Each
generation plans the window the context holds (context_window), brings the KV to it evaluating
only what it lacks (kv_cache), heals the prompt's last token (healing), then samples, streams and
evaluates one token at a time, evicting old turns if the context fills up on the way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import llama_cpp as C
import numpy as np
import psutil

from .chat_template import model_frame
from .config import GenerationParams, ModelConfig, fresh_seed
from .context_size import fitting_n_ctx
from .context_window import common_prefix, plan_window
from .errors import ChatTemplateError, ContextSizeError, ModelLoadError, OutOfMemoryError
from .gguf_file import GgufInfo, inspect_gguf
from .grammar_jump import GrammarJumps
from .healing import Healing, PieceIndex, healable_tail
from .kv_cache import KvCache
from .kv_state import OtherCacheType, StateFileError, check_payload, model_identity, read_state, write_state
from .llama_build import llama_build
from .memory import check_fits, largest_n_ctx, memory_limits, plan_memory
from .native import (
    CACHE_GGML_TYPES,
    SIDE_SEQ,
    DecodeAborted,
    DecodeError,
    NativeContext,
    NativeModel,
    Progress,
    problems_mark,
    problems_since,
)
from .prompt import Prompt
from .results import GenerationResult, ModelInfo, RestoredState, StopReason
from .sampling import SamplerChain
from .text_stream import TextAssembler

Emit = Callable[[str], None]
log = logging.getLogger("simularity.engine")


class EngineWorker:
    def __init__(self, model: NativeModel, context: NativeContext, info: ModelInfo, kv: KvCache) -> None:
        self.model = model
        self.context = context
        self.info = info
        self.kv = kv
        self.first_turn = 0  # the window's start, kept between generations so that shifts are rare
        # The vocabulary's index (healing.py): built in the first read-ahead's idle time, or when
        # healing first needs it; a refused draw before then checks the whole vocabulary.
        self._pieces: PieceIndex | None = None

    @property
    def tokens(self) -> list[int]:
        return self.kv.tokens

    @classmethod
    def load(cls, config: ModelConfig) -> EngineWorker:
        """Check the file, the context size and the memory, then load; every failure is explained."""
        gguf = inspect_gguf(config.path)
        if gguf.context_length and config.n_ctx > gguf.context_length:
            raise _context_too_large(config, gguf.context_length)
        _check_memory(config, gguf)
        mark = problems_mark()
        try:
            model = NativeModel(str(config.path), config.n_gpu_layers)
        except ModelLoadError:
            raise _load_failure(config.path, "load the model", problems_since(mark)) from None
        if config.n_ctx > model.n_ctx_train:
            model.close()
            raise _context_too_large(config, model.n_ctx_train)
        try:
            frame = model_frame(config.template, gguf, model)
        except ChatTemplateError:
            model.close()
            raise
        threads = config.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        try:
            context = NativeContext(
                model, n_ctx=config.n_ctx, n_batch=config.n_batch, n_threads=threads, cache_type=config.kv_cache
            )
        except ModelLoadError:
            model.close()
            raise _load_failure(config.path, "create its context", problems_since(mark)) from None
        kv = KvCache(context, shift=config.context_shift)
        info = ModelInfo(
            path=config.path,
            name=gguf.name,
            description=model.description,
            identity=model_identity(config.path),
            n_ctx=context.n_ctx,
            n_ctx_train=model.n_ctx_train,
            n_threads=threads,
            context_shift=kv.can_shift,
            n_vocab=model.n_vocab,
            chat_frame=frame,
        )
        return cls(model, context, info, kv)

    def close(self) -> None:
        self.context.close()
        self.model.close()

    def resize(self, n_ctx: int) -> int:
        """A new context of `n_ctx` tokens, or as many as the model and the memory allow, on the
        weights already loaded (a game of a pack written for another context); the KV starts
        empty. Returns the new size. If llama.cpp cannot make it, the old size is made again."""
        n_ctx = fitting_n_ctx(
            self.info.path, n_ctx, loaded_n_ctx=self.context.n_ctx, cache_type=self.context.cache_type
        )
        n_ctx = min(n_ctx, self.model.n_ctx_train or n_ctx)
        old = self.context
        if n_ctx == old.n_ctx:
            return n_ctx
        old.close()
        mark = problems_mark()
        try:
            context = NativeContext(
                self.model, n_ctx=n_ctx, n_batch=old.n_batch, n_threads=self.info.n_threads, cache_type=old.cache_type
            )
        except ModelLoadError:
            context = NativeContext(
                self.model, n_ctx=old.n_ctx, n_batch=old.n_batch, n_threads=self.info.n_threads,
                cache_type=old.cache_type,
            )  # fmt: skip
            log.warning("no context of %d tokens (%s): kept %d", n_ctx, problems_since(mark), old.n_ctx)
        self.context, self.first_turn = context, 0
        self.kv = KvCache(context, shift=self.info.context_shift)
        self.info = replace(self.info, n_ctx=context.n_ctx)
        return context.n_ctx

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self,
        prompt: Prompt,
        params: GenerationParams,
        emit: Emit,
        cancel: threading.Event,
        progress: Progress | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        seed = params.sampling.seed if params.sampling.seed is not None else fresh_seed()
        if not len(prompt):
            raise ValueError("a prompt needs at least one token")
        if params.aside:
            return self._generate_aside(prompt, params, emit, cancel, started, seed)
        reserve = min(max(params.max_tokens, params.room), self.context.n_ctx // 4) + 1
        window = plan_window(prompt, self.context.n_ctx, reserve, self._sticky_first_turn(prompt))
        last_turn = window.turn_starts[-1] if window.turn_starts else window.n_keep
        healed = healable_tail(self.model, window.tokens, last_turn) if params.heal and not params.grammar else 0
        until = len(window.tokens) - healed
        shifted_before = self.kv.shifted_out
        self.context.abort.watch(cancel)
        self.first_turn = window.first_turn
        evaluated = 0
        try:
            evaluated = 0 if cancel.is_set() else self.kv.load(window, until, progress)
        except DecodeAborted:
            cancel.set()
        prefill_s = time.perf_counter() - started
        healing = Healing(self.model.detokenize(window.tokens[until:])) if healed else None
        run = _Run(started, prefill_s, seed, shifted_before, healing, emit, cancel)
        if cancel.is_set():
            return self._result(run, TextAssembler(), [], "cancelled")
        run.evaluated = evaluated
        if not params.max_tokens and self._pieces is None:  # reading ahead, in idle time
            self._pieces = PieceIndex.build(self.model, cancel)
        sampler = SamplerChain(self.model, params.sampling, seed, history=window.tokens[:until], grammar=params.grammar)
        assembler = TextAssembler(params.stop, skip_bytes=len(healing.removed) if healing else 0)
        jumps = (
            GrammarJumps.of(params.grammar, digits_alone=self._digits_alone) if params.grammar and not healing else None
        )
        try:
            generated, reason = self._sample(run, sampler, assembler, params.max_tokens, jumps)
        finally:
            sampler.close()
        if text := assembler.finish():
            emit(text)
        return self._result(run, assembler, generated, reason)

    def _generate_aside(
        self, prompt: Prompt, params: GenerationParams, emit: Emit, cancel: threading.Event, started: float, seed: int
    ) -> GenerationResult:
        """A generation beside the story (`params.aside`): what the prompt shares with the story's
        KV is shared (the side sequence, native.py `fork_aside`), the rest is read and written in
        cells of its own, dropped at the end. The story's KV and window stay exactly as they were:
        the turn to come, read and written ahead meanwhile, finds them intact. Its window starts
        where the story's does; nothing is evicted: a prompt that does not fit in the free cells is
        refused ("context_full", nothing generated). No token healing (a summary has its grammar)."""
        reserve = min(params.max_tokens, self.context.n_ctx // 4) + 1
        # Planned over every cell: it may run past the story's n_ctx, into the room aside.
        flat = plan_window(prompt, self.context.cells, reserve, self._sticky_first_turn(prompt)).tokens
        story = len(self.kv.tokens)
        common = min(common_prefix(self.kv.tokens, flat), len(flat) - 1)
        run = _Run(started, 0.0, seed, self.kv.shifted_out, None, emit, cancel)
        if cancel.is_set():
            return self._result(run, TextAssembler(), [], "cancelled")
        if not self.context.aside or len(flat) - common + params.max_tokens > self.context.cells - story:
            return self._result(run, TextAssembler(), [], "context_full")
        self.context.abort.watch(cancel)
        self.context.fork_aside(common)
        position = len(flat)

        def append(tokens: list[int], _run: _Run) -> StopReason | None:
            nonlocal position
            try:
                self.context.decode(tokens, position, seq=SIDE_SEQ)
            except DecodeError as failed:  # aborted, or no cell after all: the side sequence ends here
                return "cancelled" if isinstance(failed, DecodeAborted) else "context_full"
            position += len(tokens)
            return None

        sampler = None
        try:
            try:
                self.context.decode(flat[common:], common, seq=SIDE_SEQ)
            except DecodeError as failed:
                reason: StopReason = "cancelled" if isinstance(failed, DecodeAborted) else "context_full"
                return self._result(run, TextAssembler(), [], reason)
            run.prefill_s, run.evaluated = time.perf_counter() - started, len(flat) - common
            sampler = SamplerChain(self.model, params.sampling, seed, history=flat, grammar=params.grammar)
            assembler = TextAssembler(params.stop)
            jumps = GrammarJumps.of(params.grammar, digits_alone=self._digits_alone) if params.grammar else None
            generated, reason = self._sample(run, sampler, assembler, params.max_tokens, jumps, append)
        finally:
            if sampler is not None:
                sampler.close()
            self.context.drop_aside()
        if text := assembler.finish():
            emit(text)
        return self._result(run, assembler, generated, reason)

    def _sample(
        self,
        run: _Run,
        sampler: SamplerChain,
        assembler: TextAssembler,
        max_tokens: int,
        jumps: GrammarJumps | None = None,
        append: Callable[[list[int], _Run], StopReason | None] | None = None,
    ) -> tuple[list[int], StopReason]:
        """Sample, stream and evaluate one token after another: the reply's tokens, and why it ended.
        With `jumps`, what the grammar forces after a token is appended with it (grammar_jump.py).
        `append` evaluates what was drawn (by default at the story's end, evicting if it must)."""
        append = append or self._append
        generated: list[int] = []
        healing = run.healing
        admissible = self._admissible(jumps) if jumps is not None else None
        forced, complete = self._forced(jumps, b"", max_tokens)  # what the grammar forces from the start
        if forced:
            self._take_forced(forced, sampler, assembler, run, generated)
            run.first_token_at = time.perf_counter()
            if assembler.stop_string is not None:
                return generated, "stop"
            if complete:
                return generated, "eos"
            if (stop := append(forced, run)) is not None:
                return generated, stop
        while len(generated) < max_tokens:
            if run.cancel.is_set():
                return generated, "cancelled"
            allowed = self._piece_index().consistent_with(healing.remaining) if healing and healing.active else None
            run.healing_steps += allowed is not None
            token = sampler.sample(self.context, allowed, admissible)
            run.first_token_at = run.first_token_at or time.perf_counter()
            if self.model.is_end_of_generation(token):
                return generated, "eos"
            generated.append(token)
            piece = self.model.piece(token)
            if healing is not None and healing.active:
                healing.accept(piece)
            if text := assembler.feed(piece):
                run.emit(text)
            if assembler.stop_string is not None:
                return generated, "stop"
            forced, complete = self._forced(jumps, piece, max_tokens - len(generated))
            self._take_forced(forced, sampler, assembler, run, generated)
            if assembler.stop_string is not None:
                return generated, "stop"
            if complete:
                return generated, "eos"  # the forced end is read by the next prompt, with its own tokens
            if len(generated) == max_tokens:
                break  # the last token is evaluated by the next prompt that contains it
            if (stop := append([token, *forced], run)) is not None:
                return generated, stop
        return generated, "length"

    def _take_forced(
        self, forced: list[int], sampler: SamplerChain, assembler: TextAssembler, run: _Run, generated: list[int]
    ) -> None:
        """Forced tokens join the reply as sampled ones do: in the samplers' state, the reply's
        tokens and its streamed text."""
        for token in forced:
            sampler.accept(token)
            generated.append(token)
            if text := assembler.feed(self.model.piece(token)):
                run.emit(text)

    def _admissible(self, jumps: GrammarJumps) -> Callable[[], np.ndarray | None]:
        """For a draw the grammar refused: the tokens that may be admitted next, as far as the
        automaton can tell (grammar_jump.py `leaves`); None when it cannot narrow them."""

        def tokens() -> np.ndarray | None:
            if jumps.lost or jumps.decoder.getstate()[0]:  # off the grammar, or within a character
                return None
            leaves = jumps.leaves()
            index = self._pieces
            if leaves is None or index is None:
                return None
            return np.unique(np.concatenate([index.consistent_with(leaf.encode("utf-8")) for leaf in leaves]))

        return tokens

    def _piece_index(self) -> PieceIndex:
        if self._pieces is None:
            self._pieces = PieceIndex.build(self.model)
            assert self._pieces is not None  # nothing can stop it
        return self._pieces

    @property
    def _digits_alone(self) -> bool:
        """Whether the vocabulary writes every digit as a token of its own."""
        return len(self.model.tokenize("2026")) == 4

    def _forced(self, jumps: GrammarJumps | None, piece: bytes, room: int) -> tuple[list[int], bool]:
        """After the token whose bytes are `piece`: the tokens the grammar forces next (none when
        they would not fit in `room`, or their text does not read back exactly), and whether the
        grammar is complete after them. The forced tokens are fed to `jumps` here."""
        if jumps is None:
            return [], False
        jumps.feed(jumps.decoder.decode(piece))
        if jumps.lost or jumps.decoder.getstate()[0]:  # off the grammar, or within a character
            return [], False
        text, complete = jumps.forced()
        if not text:
            return [], complete  # complete: the token just drawn ended it (a line's "\n")
        tokens = self.model.tokenize(text)
        if not tokens or len(tokens) > room or self.model.detokenize(tokens) != text.encode("utf-8"):
            return [], False
        jumps.feed(text)
        return tokens, complete

    def _append(self, tokens: list[int], run: _Run) -> StopReason | None:
        """Evaluate generated tokens (one sampled, and any the grammar forced after it) in one
        batch, evicting old turns first if the context is full; why the reply stops if it cannot go
        on (None: it goes on)."""
        try:
            if len(self.kv.tokens) + len(tokens) > self.context.n_ctx:
                room = self.kv.make_room()
                if room is None or len(self.kv.tokens) + len(tokens) > self.context.n_ctx:
                    return "context_full"
                self.first_turn += room[0]
                run.evaluated += room[1]
            self.kv.append(tokens)
        except DecodeAborted:
            return "cancelled"
        return None

    def _sticky_first_turn(self, prompt: Prompt) -> int:
        """Keep the window's start when the KV still holds that turn first; else start afresh."""
        turn = prompt.turns[self.first_turn] if self.first_turn < len(prompt.turns) else None
        n_keep = self.kv.n_keep
        if turn and tuple(self.kv.tokens[n_keep : n_keep + len(turn)]) == turn:
            return self.first_turn
        return 0

    def _result(
        self, run: _Run, assembler: TextAssembler, generated: list[int], reason: StopReason
    ) -> GenerationResult:
        ended = time.perf_counter()
        healing = run.healing
        first_token_at = run.first_token_at or ended
        tokens, tail = self._split_at_text_end(generated, assembler) if reason == "stop" else (generated, "")
        healed = 1 if healing is not None else 0
        if healing is not None and not self.model.detokenize(tokens).startswith(healing.removed):
            # The reply stopped before its tokens re-wrote the rolled-back text (cancelled, out of
            # tokens, or a stop string inside the very first token): the prompt keeps its own token.
            healed, tokens, tail = 0, [], assembler.text
        return GenerationResult(
            text=assembler.text,
            tokens=tuple(tokens),
            tail_text=tail,
            healed_tokens=healed,
            healing_steps=run.healing_steps,
            stop_reason=reason,
            stop_string=assembler.stop_string,
            seed=run.seed,
            first_turn=self.first_turn,
            evaluated_tokens=run.evaluated,
            shifted_tokens=self.kv.shifted_out - run.shifted_before,
            generated_tokens=len(generated),
            prefill_s=run.prefill_s,
            first_token_s=first_token_at - run.started,
            decode_s=ended - first_token_at,
        )

    def _split_at_text_end(self, generated: list[int], assembler: TextAssembler) -> tuple[list[int], str]:
        """The longest run of `generated` whose bytes fit inside the streamed text (after any
        healed prefix), and the text left over."""
        text = assembler.text
        budget = assembler.skip_bytes + len(text.encode("utf-8"))
        count, used = 0, 0
        for token in generated:
            size = len(self.model.piece(token))
            if used + size > budget:
                break
            used += size
            count += 1
        while count:
            covered = self.model.detokenize(generated[:count])[assembler.skip_bytes :]
            try:
                return generated[:count], text[len(covered.decode("utf-8")) :]
            except UnicodeDecodeError:  # the run ends inside a character: give that token back
                count -= 1
        return [], text

    def reset(self) -> None:
        self.context.clear()
        self.kv.tokens.clear()
        self.kv.n_keep, self.kv.turn_starts, self.first_turn = 0, [], 0

    # -- KV state files -------------------------------------------------------------------------

    def save_state(self, path: Path) -> int:
        """Write the KV's sequence state beside a save; returns the file's size in bytes (0 when the
        state is not one a later restore could check: none is written then, and resuming re-reads)."""
        payload = self.context.state()
        try:
            check_payload(
                payload, len(self.kv.tokens), CACHE_GGML_TYPES[self.context.cache_type], self.context.story_sequences
            )
        except StateFileError as problem:
            # A memory layout restore would refuse (recurrent models, a newer llama.cpp): writing it
            # would only cost disk and a warning on every resume. An older file would be as stale.
            log.warning("no KV state file for %s: %s", path.name, problem)
            path.unlink(missing_ok=True)
            return 0
        write_state(
            path,
            payload,
            model=self.info.identity,
            n_keep=self.kv.n_keep,
            turn_starts=self.kv.turn_starts,
            first_turn=self.first_turn,
            tokens=self.kv.tokens,
        )
        return path.stat().st_size

    def restore_state(self, path: Path) -> RestoredState:
        """Load a state file into the KV. On any problem say why, and leave the KV as it was (a file
        that cannot be used is noticed before the KV is touched) or empty: never inconsistent.

        Everything llama.cpp would trust is checked first (it aborts the process on some damage,
        not with an error), and the restored KV must give the last token's logits as numbers."""
        try:
            header, payload = read_state(path, model=self.info.identity)
            if len(header.tokens) >= self.context.n_ctx:
                raise StateFileError(
                    f"{path.name} holds {len(header.tokens):,} tokens; this context holds {self.context.n_ctx:,}"
                )
            if header.tokens and max(header.tokens) >= self.model.n_vocab:
                raise StateFileError(f"{path.name} holds tokens this model does not have")
            try:
                check_payload(
                    payload, len(header.tokens), CACHE_GGML_TYPES[self.context.cache_type], self.context.story_sequences
                )
            except OtherCacheType as problem:
                raise StateFileError(f"{path.name}: {problem}") from None
            except StateFileError as problem:
                raise StateFileError(f"{path.name} is damaged ({problem})") from None
        except StateFileError as problem:
            return RestoredState(0, f"{problem}; the story is read again instead.")
        self.reset()
        if not self.context.load_state(payload):
            self.reset()
            return RestoredState(0, f"llama.cpp refused {path.name}; the story is read again instead.")
        held = (self.context.first_position(), self.context.last_position())
        if held != ((0, len(header.tokens) - 1) if header.tokens else (-1, -1)):  # never trust a mismatch
            self.reset()
            return RestoredState(0, f"{path.name} does not match its token list; the story is read again instead.")
        if not self._reads_back(header.tokens):
            self.reset()
            return RestoredState(
                0, f"{path.name} is damaged (the model reads no numbers from it); the story is read again instead."
            )
        self.kv.tokens.extend(header.tokens)
        self.kv.n_keep, self.kv.turn_starts = header.n_keep, list(header.turn_starts)
        self.first_turn = header.first_turn
        return RestoredState(len(header.tokens), None)

    def _reads_back(self, tokens: list[int]) -> bool:
        """Whether the restored KV gives numbers for the next token: its last token is evaluated
        again on it (as the next generation would anyway) and the logits must hold no NaN or
        infinity, which would reach the sampler and abort the process in the grammar's hands."""
        if not tokens:
            return True
        if not self.context.forget_from(len(tokens) - 1):
            return True  # a memory that cannot drop its last cell: check_payload vouched for its values
        self.context.abort.watch(threading.Event())  # not the last generation's event: it may be set
        try:
            self.context.decode(tokens[-1:], len(tokens) - 1)
        except DecodeError:
            return False
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self.context.ptr, -1), shape=(self.model.n_vocab,))
        return bool(np.isfinite(logits).all())


@dataclass
class _Run:
    """One generation on its way, as far as its result needs."""

    started: float
    prefill_s: float
    seed: int
    shifted_before: int  # the KV's count of shifted-out tokens when it began
    healing: Healing | None
    emit: Emit
    cancel: threading.Event
    evaluated: int = 0  # prompt tokens evaluated (a cancelled generation reports none)
    first_token_at: float = 0.0
    healing_steps: int = 0


def _check_memory(config: ModelConfig, gguf: GgufInfo) -> None:
    """Refuse, with the figures, a model and context that do not fit (RAM, the address-space limit,
    and GPU memory where a GPU build says how much is free): memory.py's arithmetic, as the doctor's."""
    offload = bool(C.llama_supports_gpu_offload()) and config.n_gpu_layers != 0
    limits = memory_limits(llama_build().vram_free() if offload else None)
    plan = plan_memory(gguf, config.n_ctx, gpu_layers=config.n_gpu_layers, offload=offload, cache_type=config.kv_cache)
    if plan.problem(limits) is not None:
        largest = largest_n_ctx(
            gguf, limits, gpu_layers=config.n_gpu_layers, offload=offload, cache_type=config.kv_cache
        )
        check_fits(config.path, plan, limits, largest=largest)


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
