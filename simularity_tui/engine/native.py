"""The thin layer over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Everything here runs on the engine thread, except `NativeModel.tokenize` and `NativeModel.piece`,
which only read the immutable vocabulary. Nothing here knows about asyncio or stories.

We use the C API rather than `llama_cpp.Llama` because the engine needs what that class hides: the
KV memory calls (`seq_rm`/`seq_add`), an abort callback for cancelling a long prefill, token pieces
longer than 32 bytes, and llama.cpp's log kept off the terminal (the TUI owns it).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from collections.abc import Callable, Sequence

import llama_cpp as C

from ..untrusted_text import printable
from .amx import plain_layout
from .config import KvCacheType
from .errors import ModelLoadError
from .kv_size import aside_cells

log = logging.getLogger("simularity.llama")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line).
_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
# llama.cpp's recent warnings and errors, numbered from the process's start: they explain a NULL
# model or context after the fact. Numbered because the deque is bounded: once full its length stops
# growing, and a mark taken as its length would see nothing logged after it.
_recent_problems: collections.deque[tuple[int, str]] = collections.deque(maxlen=32)
_problems_logged = 0
_last_level = logging.DEBUG


def _log_to_python(level: int, text: bytes, _user_data: int | None) -> None:
    # llama.cpp writes to stderr by default, which would scribble over the TUI: route it to logging.
    global _last_level, _problems_logged
    python_level = _LOG_LEVELS.get(level, _last_level)  # 5 = continuation of the previous line
    _last_level = python_level
    # Printable: the log is read in terminals, and llama.cpp quotes what it was given (a grammar, a path).
    message = printable(text.decode("utf-8", errors="replace").rstrip())
    if message:
        if python_level >= logging.WARNING:
            _recent_problems.append((_problems_logged, message))
            _problems_logged += 1
        log.log(python_level, "%s", message)


# What llama.cpp calls: a C function pointer to `_log_to_python`, kept for the life of the process
# (llama.cpp holds on to the pointer; a collected one would crash the next log line).
_log_callback = C.llama_log_callback(_log_to_python)
_backend_lock = threading.Lock()
_backend_ready = False


def init_backend() -> None:
    """Initialise llama.cpp once per process, with its log routed to Python's logging."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            C.llama_backend_init()
            C.llama_log_set(_log_callback, ctypes.c_void_p(0))
            _backend_ready = True


def problems_mark() -> int:
    """A mark for `problems_since`: how many warnings and errors llama.cpp has logged so far."""
    return _problems_logged


def problems_since(mark: int) -> str:
    """llama.cpp's warnings and errors logged after `mark` (of `problems_mark`), as one line."""
    return "; ".join(message for number, message in list(_recent_problems) if number >= mark)


class NativeModel:
    """A loaded model: weights and vocabulary."""

    def __init__(self, path: str, n_gpu_layers: int, *, vocab_only: bool = False) -> None:
        """`vocab_only`: the vocabulary alone (tokenizing, in a fraction of a second): no weights,
        no context, and no training metadata (`n_ctx_train` is 0, `description` empty)."""
        init_backend()
        params = C.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        params.vocab_only = vocab_only
        params.use_extra_bufts = not plain_layout()  # AMX's layout crashes some machines (amx.py)
        self.ptr = C.llama_model_load_from_file(path.encode(), params)
        if not self.ptr:
            raise ModelLoadError(f"llama.cpp could not load {path}")
        self.vocab = C.llama_model_get_vocab(self.ptr)
        self.n_vocab: int = C.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = C.llama_model_n_ctx_train(self.ptr)
        self.add_bos: bool = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.bos: int = C.llama_vocab_bos(self.vocab)
        self.eos: int = C.llama_vocab_eos(self.vocab)
        self._pieces: dict[int, bytes] = {}
        buffer = ctypes.create_string_buffer(256)
        C.llama_model_desc(self.ptr, buffer, len(buffer))
        self.description: str = buffer.value.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self.ptr:
            C.llama_model_free(self.ptr)
            self.ptr = None

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`. `special=False` keeps text such as "<eos>" literal (player input)."""
        data = text.encode("utf-8")
        capacity = len(data) + 2
        while True:
            tokens = (C.llama_token * capacity)()
            count = C.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
            if count >= 0:
                return list(tokens[:count])
            capacity = -count

    def piece(self, token: int) -> bytes:
        """The exact bytes of one token (control tokens render as nothing).

        Unlike `Llama.detokenize`, pieces longer than 32 bytes (Gemma's runs of "…") are kept.
        """
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buffer = ctypes.create_string_buffer(64)
        size = C.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = C.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        piece = buffer.raw[:size]
        self._pieces[token] = piece
        return piece

    def token_text(self, token: int) -> str:
        """A token's text as the vocabulary spells it, control tokens included ("<bos>"): what a
        chat template calls bos_token and eos_token. Empty for a token the model does not have."""
        if not 0 <= token < self.n_vocab:
            return ""
        text = C.llama_vocab_get_text(self.vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return b"".join(self.piece(token) for token in tokens)

    def is_end_of_generation(self, token: int) -> bool:
        return bool(C.llama_vocab_is_eog(self.vocab, token))


class AbortFlag:
    """What llama.cpp polls between graph nodes while it decodes: the running job's cancel event."""

    def __init__(self) -> None:
        self._event: threading.Event | None = None
        self._masked = False
        # The callback runs on ggml's worker thread; keep the ctypes object alive as long as we are.
        self.callback = C.ggml_abort_callback(
            lambda _data: not self._masked and self._event is not None and self._event.is_set()
        )

    def watch(self, event: threading.Event) -> None:
        self._event = event


class DecodeError(Exception):
    """llama_decode failed; positions from `kept` on hold nothing of this call."""

    def __init__(self, kept: int, status: int) -> None:
        super().__init__(f"llama_decode failed with status {status} at position {kept}")
        self.kept = kept
        self.status = status


class DecodeAborted(DecodeError):
    """llama_decode stopped because the abort flag was set."""

    def __init__(self, kept: int) -> None:
        super().__init__(kept, 2)


Progress = Callable[[int, int], None]  # (tokens done, tokens in all)


CACHE_GGML_TYPES: dict[KvCacheType, int] = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0}
# A second sequence, never the story: a span `replace_span` evaluates, or a generation aside
# (`fork_aside`). Each lives only inside one call on the engine thread, so they never meet.
SIDE_SEQ = 1
# A third that holds every cell of the story's, on a model with a sliding window. llama.cpp's
# `find_slot` takes a cell held by one sequence for a new token once the cell lies outside that
# sequence's window, and then drops every older position of it (to keep its positions one run):
# the sliding layers' keys of the pinned block and older lines, which a rollback (regenerate, undo)
# or a shift brings back into the window, would be gone. A cell held by two is never taken so; the
# guard is a name on the story's cells, not a copy (`seq_cp` adds a sequence id to a cell).
GUARD_SEQ = 2
_EVERY_SEQ = -1  # llama.cpp's sequence id for all of them, in the state calls


def _keeps_a_state(model: NativeModel) -> bool:
    """A recurrent or hybrid model: its memory holds a state per sequence, not a cell per position."""
    return bool(C.llama_model_is_recurrent(model.ptr) or C.llama_model_is_hybrid(model.ptr))


class NativeContext:
    """One llama.cpp context whose story is sequence 0, with KV the caller tracks. A second sequence
    exists only inside `replace_span` or a generation aside; the KV is unified, so both share its
    cells. On a model with a sliding window every story cell also carries GUARD_SEQ, so that no
    cell of the story is ever given away. Beyond the story's `n_ctx` it holds `aside` cells more
    (kv_size.aside_cells): room for a generation aside while the story's window is full."""

    def __init__(
        self, model: NativeModel, *, n_ctx: int, n_batch: int, n_threads: int, cache_type: KvCacheType = "f16"
    ) -> None:
        params = C.llama_context_default_params()
        self.aside: int = self._aside_for(model, n_ctx)
        # Only a sliding window's cells are ever taken from the story; a recurrent or hybrid model's
        # sequences each cost a whole state (and a guard on one would copy it at every decode).
        self.guarded = C.llama_model_n_swa(model.ptr) > 0 and not _keeps_a_state(model)
        params.n_ctx = n_ctx + self.aside
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = 3 if self.guarded else 2  # seq 0, SIDE_SEQ (and GUARD_SEQ)
        params.kv_unified = True  # one pool of cells: what the second sequence shares costs no memory
        # One logits row per batch is all we read; the default (n_batch rows of a 262k vocabulary)
        # reserves ~500 MiB of compute buffer for Gemma. llama.cpp reserves one row per sequence.
        params.n_outputs_max = params.n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.swa_full = True  # SWA models (Gemma 3) can shift and roll back only with a full cache
        params.type_k = params.type_v = CACHE_GGML_TYPES[cache_type]
        if cache_type != "f16":  # llama.cpp keeps quantized values only with flash attention
            params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.cache_type = cache_type
        self.model = model
        self.ptr = C.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise ModelLoadError("llama.cpp could not create the context")
        self.cells: int = C.llama_n_ctx(self.ptr)  # llama.cpp pads what it was asked for: the story gets it
        self.n_ctx: int = self.cells - self.aside
        self.n_batch = n_batch
        self.memory = C.llama_get_memory(self.ptr)
        self.abort = AbortFlag()
        self.shift_pending = False  # keys moved by `shift`, re-rotated by llama.cpp on the next decode
        # The story position whose next-token logits are at hand (-1: none), and their copy once a
        # decode on the side sequence overwrites llama.cpp's output: a prompt read ahead to its end
        # in idle time is drawn from at once, even with a summary written aside since.
        self._logits_position = -1
        self._logits_copy: ctypes.Array[ctypes.c_float] | None = None
        # The next draw reads that copy: llama.cpp's output holds the side sequence's row, or none
        # at all (a decode stopped midway leaves no row). Until the next decode.
        self.draws_from_kept_logits = False
        C.llama_set_abort_callback(self.ptr, self.abort.callback, None)
        self._batch = C.llama_batch_init(n_batch, 0, 1)

    @staticmethod
    def _aside_for(model: NativeModel, n_ctx: int) -> int:
        """The cells beyond the story's for a generation aside: none for a recurrent or hybrid model
        (its `seq_cp` copies a sequence's whole state, not the positions before a point, so the
        aside would go on from what the story read after it), and none past the positions the
        model was trained for."""
        if _keeps_a_state(model):
            return 0
        trained = model.n_ctx_train or n_ctx + aside_cells(n_ctx)
        return max(0, min(aside_cells(n_ctx), trained - n_ctx))

    def close(self) -> None:
        if self.ptr:
            C.llama_batch_free(self._batch)
            C.llama_free(self.ptr)
            self.ptr = None

    def decode(self, tokens: Sequence[int], start: int, progress: Progress | None = None, *, seq: int = 0) -> None:
        """Evaluate `tokens` at positions start.. of sequence `seq` in batches; logits only for the
        last one.

        llama.cpp polls the abort flag between graph nodes (measured: no cost on decode speed).
        A set flag raises `DecodeAborted(n)`, any other failure `DecodeError(n)`: positions from n
        on hold nothing (llama.cpp rolls the unfinished batch back), so the caller's token list
        can stay exact.
        """
        if self.shift_pending and tokens:
            # llama.cpp re-rotates shifted keys at the start of the next decode; an abort inside
            # that step leaves some layers rotated and the next decode rotates them again. So the
            # first token after a shift is decoded with the abort masked: one short, sure step.
            self.abort._masked = True
            try:
                self._decode_batches(tokens[:1], start, last=len(tokens) == 1, seq=seq)
            finally:
                self.abort._masked = False
            self.shift_pending = False
            tokens, start = tokens[1:], start + 1
        self._decode_batches(tokens, start, last=True, progress=progress, seq=seq)

    def _decode_batches(
        self, tokens: Sequence[int], start: int, *, last: bool, progress: Progress | None = None, seq: int = 0
    ) -> None:
        if seq == 0:
            self._forget_logits()
        else:
            self._keep_story_logits()
        self.draws_from_kept_logits = False
        batch = self._batch
        for first in range(0, len(tokens), self.n_batch):
            if progress is not None:
                progress(first, len(tokens))
            chunk = tokens[first : first + self.n_batch]
            last_chunk = first + len(chunk) == len(tokens)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + first + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = last and last_chunk and i == len(chunk) - 1
            batch.n_tokens = len(chunk)
            status = C.llama_decode(self.ptr, batch)
            if status == 2:
                raise DecodeAborted(start + first)
            if status != 0:
                raise DecodeError(start + first, status)
            if seq == 0 and self.guarded:  # before the next batch's find_slot could take one
                C.llama_memory_seq_cp(self.memory, 0, GUARD_SEQ, start + first, start + first + len(chunk))
            if seq == 0 and last and last_chunk:
                self._logits_position = start + len(tokens) - 1

    def next_logits_at_hand(self, position: int) -> bool:
        """Whether the logits after the story's `position` are the last the story decoded; if so,
        the next draw reads them (`next_logits`), from their copy where a decode on the side
        sequence came since."""
        if position < 0 or position != self._logits_position:
            return False
        self.draws_from_kept_logits = self._logits_copy is not None
        return True

    def next_logits(self) -> ctypes._Pointer[ctypes.c_float]:
        """The logits the next token is drawn from: the last decode's, or the story's kept copy."""
        if self.draws_from_kept_logits and self._logits_copy is not None:
            return ctypes.cast(self._logits_copy, ctypes.POINTER(ctypes.c_float))
        row: ctypes._Pointer[ctypes.c_float] = C.llama_get_logits_ith(self.ptr, -1)
        return row

    def _keep_story_logits(self) -> None:
        """Before a decode on the side sequence: copy the story's last logits out of its way."""
        if self._logits_position >= 0 and self._logits_copy is None:
            copy = (ctypes.c_float * self.model.n_vocab)()
            ctypes.memmove(copy, C.llama_get_logits_ith(self.ptr, -1), ctypes.sizeof(copy))
            self._logits_copy = copy

    def _forget_logits(self) -> None:
        """The story's KV changes: the logits at hand are no longer its next token's."""
        self._logits_position, self._logits_copy, self.draws_from_kept_logits = -1, None, False

    def shift(self, start: int, end: int) -> bool:
        """Remove positions [start, end) and slide the later ones left; False if refused.

        The caller must have checked `llama_memory_can_shift`: `seq_add` on memory that cannot
        shift aborts the process.
        """
        if not self._story_rm(start, end):
            return False
        C.llama_memory_seq_add(self.memory, 0, end, -1, -(end - start))  # the guard shares the cells moved
        self.shift_pending = True
        return True

    def replace_span(self, start: int, end: int, tokens: Sequence[int]) -> bool:
        """Replace positions [start, end) with `tokens`, evaluated in place, and slide the later
        positions by the difference without evaluating them again; False if refused (nothing
        changed then). On `DecodeError` the KV holds positions < `start` only.

        llama.cpp decodes a sequence only at its next position, so the new span is evaluated on a
        second sequence that shares the cells before `start` (`seq_cp` adds a sequence id to a cell,
        it copies nothing); its cells are then given to sequence 0 and the second one dropped. The
        caller must have checked `llama_memory_can_shift`, as for `shift`.
        """
        memory = self.memory
        C.llama_memory_seq_rm(memory, SIDE_SEQ, -1, -1)
        if not self._story_rm(start, end):
            return False
        delta = len(tokens) - (end - start)
        if delta:
            C.llama_memory_seq_add(memory, 0, end, -1, delta)
            self.shift_pending = True
        C.llama_memory_seq_cp(memory, 0, SIDE_SEQ, 0, start)
        self.abort._masked = True  # a short span, and a pending re-rotation must not be cut in two
        try:
            self._decode_batches(tokens, start, last=False, seq=SIDE_SEQ)
        except DecodeError:
            C.llama_memory_seq_rm(memory, SIDE_SEQ, -1, -1)
            self.forget_from(start)
            raise
        finally:
            self.abort._masked = False
        self.shift_pending = self.shift_pending and not tokens  # a decode re-rotated what moved
        C.llama_memory_seq_cp(memory, SIDE_SEQ, 0, start, start + len(tokens))
        if self.guarded:
            C.llama_memory_seq_cp(memory, SIDE_SEQ, GUARD_SEQ, start, start + len(tokens))
        C.llama_memory_seq_rm(memory, SIDE_SEQ, -1, -1)
        return True

    def fork_aside(self, common: int) -> None:
        """Start a generation aside: the side sequence shares the story's first `common` positions
        (`seq_cp` adds a sequence id to a cell, it copies nothing) and goes on from there in cells
        of its own, while the story's later positions stay as they are. `decode(..., seq=SIDE_SEQ)`
        writes it; `drop_aside` frees its cells."""
        C.llama_memory_seq_rm(self.memory, SIDE_SEQ, -1, -1)
        C.llama_memory_seq_cp(self.memory, 0, SIDE_SEQ, 0, common)

    def drop_aside(self) -> None:
        C.llama_memory_seq_rm(self.memory, SIDE_SEQ, -1, -1)

    def can_shift(self) -> bool:
        return bool(C.llama_memory_can_shift(self.memory))

    def forget_from(self, position: int) -> bool:
        """Drop the KV of positions >= `position`; False if the memory cannot remove that range."""
        return self._story_rm(position, -1)

    def _story_rm(self, start: int, end: int) -> bool:
        """Remove the story's positions [start, end) (-1: to its end), and the guard's with them."""
        self._forget_logits()
        if not C.llama_memory_seq_rm(self.memory, 0, start, end):
            return False
        if self.guarded:
            C.llama_memory_seq_rm(self.memory, GUARD_SEQ, start, end)
        return True

    def first_position(self) -> int:
        """The lowest position the KV holds for the story on every layer (-1 when empty): above 0,
        the sliding layers have lost the positions below it."""
        return int(C.llama_memory_seq_pos_min(self.memory, 0))

    @property
    def story_sequences(self) -> tuple[int, ...]:
        """The sequence ids each of the story's cells carries."""
        return (0, GUARD_SEQ) if self.guarded else (0,)

    def state(self) -> bytes:
        """The KV's cells as llama.cpp saves them (`llama_state_seq_get_data`), for a state file.

        Every cell, of every sequence: between generations that is the story's and its guard's.
        Not sequence 0 alone: llama.cpp then leaves out the cells outside its sliding window, and a
        rollback or shift after the restore would find those keys missing."""
        size = C.llama_state_seq_get_size(self.ptr, _EVERY_SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = C.llama_state_seq_get_data(self.ptr, buffer, size, _EVERY_SEQ)
        return bytes(buffer)[:written]

    def load_state(self, payload: bytes) -> bool:
        """Replace the whole KV with `state()`'s bytes; False if llama.cpp refused (the KV is then
        empty or partial: the caller clears it)."""
        self._forget_logits()
        buffer = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        return bool(C.llama_state_seq_set_data(self.ptr, buffer, len(payload), _EVERY_SEQ))

    def last_position(self) -> int:
        """The highest position held in the KV (-1 when empty)."""
        return int(C.llama_memory_seq_pos_max(self.memory, 0))

    def clear(self) -> None:
        self._forget_logits()
        C.llama_memory_clear(self.memory, True)
        self.shift_pending = False
