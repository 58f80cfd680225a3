"""llama.cpp's native sampler chain, built per generation from `SamplingParams`.

Native samplers keep sampling off the Python hot path (a Python logits processor over a 262k
vocabulary costs ~40% of decode speed).

A grammar is not part of the chain: checking every one of 262k candidates against it cut decode
from ~70 to ~18 tok/s on Gemma. As llama.cpp's own `common_sampler` does, the chain picks a token
first and the grammar only checks that one; only when it refuses is the grammar applied and the
token drawn again, on the candidates that can be admitted where they are known (the grammar's
automaton, or the likeliest tokens when enough of them are admitted), else on all of them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Sequence

import llama_cpp as C
import numpy as np

from ..sampling_fields import MAX_REPEAT_LAST_N, MAX_TOP_K
from .config import SamplingParams
from .errors import GrammarError
from .native import NativeContext, NativeModel, problems_mark, problems_since


class SamplerChain:
    """grammar -> top-k -> penalties -> DRY -> typical-p -> top-p -> min-p -> XTC -> temperature ->
    draw (or greedy; or, with mirostat: penalties -> DRY -> temperature -> mirostat's draw).

    llama.cpp's common order (penalties, DRY, top-k, typical, top-p, min-p, XTC, temperature, dist),
    with one change kept for speed: top-k comes before the penalties and DRY, which otherwise walk
    the whole 262k vocabulary for every token; they only reorder the k likeliest. Mirostat sets its
    own cut-off, so with it (as in llama.cpp) the truncating samplers are left out and it draws.
    A sampler that is off is never added: the default chain is as short as before.
    """

    def __init__(
        self,
        model: NativeModel,
        params: SamplingParams,
        seed: int,
        *,
        history: Sequence[int] = (),
        grammar: str | None = None,
    ) -> None:
        self.ptr = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self.n_vocab = model.n_vocab
        self.grammar = None
        if grammar is not None:
            mark = problems_mark()
            self.grammar = C.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                C.llama_sampler_free(self.ptr)
                raise GrammarError(
                    f"The GBNF grammar does not parse: {problems_since(mark) or 'llama.cpp gave no reason'}",
                    hint="Check the grammar's syntax; its start rule must be named 'root'.",
                )
        self._candidates: np.ndarray | None = None  # the slow path's buffers, made on first use
        greedy = params.temperature <= 0.0
        mirostat = params.mirostat if not greedy else 0
        if not greedy and not mirostat and params.top_k > 0:
            self._add(C.llama_sampler_init_top_k(min(params.top_k, MAX_TOP_K)))
        last_n = min(params.repeat_last_n, MAX_REPEAT_LAST_N)
        penalised = params.repeat_penalty != 1.0 or params.frequency_penalty != 0.0 or params.presence_penalty != 0.0
        if penalised and last_n > 0:
            # After top-k: on a 262k vocabulary the penalty pass is otherwise the slowest sampler.
            self._add_with_history(
                C.llama_sampler_init_penalties(
                    model.n_vocab, last_n, params.repeat_penalty, params.frequency_penalty, params.presence_penalty
                ),
                history[-last_n:],
            )
        dry_last_n = (
            MAX_REPEAT_LAST_N if params.dry_penalty_last_n < 0 else min(params.dry_penalty_last_n, MAX_REPEAT_LAST_N)
        )
        if params.dry_multiplier > 0.0 and dry_last_n > 0:
            breakers = [breaker.encode("utf-8") for breaker in params.dry_sequence_breakers]
            array = (ctypes.c_char_p * max(1, len(breakers)))(*breakers)  # llama.cpp copies them at init
            dry = C.llama_sampler_init_dry(
                model.vocab, params.dry_multiplier, params.dry_base, params.dry_allowed_length, dry_last_n,
                array, len(breakers),
            )  # fmt: skip
            # The story so far counts as already said, as for the penalties: DRY stops the reply from
            # repeating the story, not only itself.
            self._add_with_history(dry, history[-dry_last_n:])
        # How many of the likeliest tokens decide the draw whatever the rest (top-k first in the
        # chain; greedy with nothing before it: one), 0 where samplers before the cut change the
        # order or mirostat looks further: see `_draw_admitted`. Mirostat 1 estimates from the
        # first 100 candidates, so a subset of the vocabulary is no draw of the same.
        reordered = greedy and (penalised and last_n > 0 or params.dry_multiplier > 0.0 and dry_last_n > 0)
        top_k = 1 if greedy else min(params.top_k, MAX_TOP_K) if not mirostat and params.top_k > 0 else 0
        self.top_k = 0 if reordered else top_k
        self._subsets = mirostat != 1
        if greedy:
            self._add(C.llama_sampler_init_greedy())
            return
        if mirostat:
            self._add(C.llama_sampler_init_temp(params.temperature))
            if mirostat == 1:
                self._add(
                    C.llama_sampler_init_mirostat(model.n_vocab, seed, params.mirostat_tau, params.mirostat_eta, 100)
                )
            else:
                self._add(C.llama_sampler_init_mirostat_v2(seed, params.mirostat_tau, params.mirostat_eta))
            return
        if params.typical_p < 1.0:
            self._add(C.llama_sampler_init_typical(params.typical_p, 1))
        if params.top_p < 1.0:
            self._add(C.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(C.llama_sampler_init_min_p(params.min_p, 1))
        if params.xtc_probability > 0.0:
            self._add(C.llama_sampler_init_xtc(params.xtc_probability, params.xtc_threshold, 1, seed))
        self._add(C.llama_sampler_init_temp(params.temperature))
        self._add(C.llama_sampler_init_dist(seed))

    def _add(self, sampler: C.llama_sampler_p) -> None:
        C.llama_sampler_chain_add(self.ptr, sampler)  # the chain owns it from here

    def _add_with_history(self, sampler: C.llama_sampler_p, history: Sequence[int]) -> None:
        # The recent context counts as "already said". It is fed to this sampler alone, before the
        # chain owns it, so that the grammar never sees prompt tokens.
        for token in history:
            C.llama_sampler_accept(sampler, token)
        self._add(sampler)

    def accept(self, token: int) -> None:
        """Record a token the grammar forced (not sampled) in the samplers' state, the grammar's too."""
        if self.grammar is not None:
            C.llama_sampler_accept(self.grammar, token)
        C.llama_sampler_accept(self.ptr, token)

    def sample(
        self,
        context: NativeContext,
        allowed: np.ndarray | None = None,
        admissible: Callable[[], np.ndarray | None] | None = None,
    ) -> int:
        """Pick the next token from the last logits, and record it in the samplers' state.

        `allowed` restricts the choice to those token ids (token healing). `admissible`, asked only
        when the grammar refuses the first draw, gives ids that hold every token the grammar admits
        (None: it cannot tell): the grammar then checks those alone, not the whole vocabulary.
        """
        if self.grammar is None and allowed is None and not context.draws_from_kept_logits:
            return int(C.llama_sampler_sample(self.ptr, context.ptr, -1))
        logits = np.ctypeslib.as_array(context.next_logits(), shape=(self.n_vocab,))
        token = self._draw(logits, allowed, with_grammar=False)
        if self.grammar is not None:
            if not self._grammar_allows(token):
                token = self._draw_admitted(logits, allowed, admissible, refused=token)
                # With logits that are not numbers (a damaged state) every candidate ties at -inf and
                # the draw may still be one the grammar refuses: accepting it would abort the process.
                if not self._grammar_allows(token):
                    raise GrammarError(
                        "The model's output could not follow the grammar (its scores are not numbers).",
                        hint="The model state may be damaged: start the game again.",
                    )
            C.llama_sampler_accept(self.grammar, token)
        C.llama_sampler_accept(self.ptr, token)
        return token

    def _draw_admitted(
        self,
        logits: np.ndarray,
        allowed: np.ndarray | None,
        admissible: Callable[[], np.ndarray | None] | None,
        *,
        refused: int,
    ) -> int:
        """A draw among the tokens the grammar admits, as if the grammar had judged every token
        (it sets the others to -inf, which no sampler after it can pick): on the likeliest tokens
        (`_likeliest`), when enough of them are admitted for the chain's top-k to be the same,
        unless `admissible` names fewer ids (after the head's space it names every word: 137k);
        else on the ids it names; else on the whole vocabulary (~25 ms on 262k).
        The `refused` first draw stays among the candidates (at -inf): a sampler that draws only
        from two candidates or more (XTC) draws as it would on the whole vocabulary."""
        ids = admissible() if admissible is not None and allowed is None and self._subsets else None
        if allowed is None and self.top_k and len(logits) > _LIKELIEST and (ids is None or len(ids) > _LIKELIEST):
            for likeliest in _likeliest(logits):
                if (token := self._draw_among(logits, _with(likeliest, refused), enough=self.top_k)) is not None:
                    return token
        if ids is not None and (token := self._draw_among(logits, _with(ids, refused), enough=1)) is not None:
            return token
        return self._draw(logits, allowed, with_grammar=True)

    def _draw_among(self, logits: np.ndarray, ids: np.ndarray, *, enough: int) -> int | None:
        """The grammar, then the chain, on the candidates `ids` alone; None when the grammar admits
        fewer than `enough` of them."""
        candidates = np.zeros(len(ids), dtype=_TOKEN_DATA)
        candidates["id"] = ids
        candidates["logit"] = logits[ids]
        array = _as_token_data_array(candidates)
        C.llama_sampler_apply(self.grammar, ctypes.byref(array))
        if np.count_nonzero(np.isfinite(candidates["logit"][: array.size])) < enough:
            return None
        C.llama_sampler_apply(self.ptr, ctypes.byref(array))
        chosen = ctypes.cast(array.data, ctypes.POINTER(C.llama_token_data))[array.selected]
        return int(chosen.id)

    def _draw(self, logits: np.ndarray, allowed: np.ndarray | None, *, with_grammar: bool) -> int:
        if self._candidates is None:
            self._candidates = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
            self._ids = np.arange(self.n_vocab, dtype=np.int32)
            self._one = np.zeros(1, dtype=_TOKEN_DATA)
        candidates = self._candidates
        candidates["id"] = self._ids  # the samplers sort the array in place: restore vocabulary order
        if allowed is None:
            candidates["logit"] = logits
        else:
            candidates["logit"] = -np.inf
            candidates["logit"][allowed] = logits[allowed]
        candidates["p"] = 0.0
        array = _as_token_data_array(candidates)
        if with_grammar:
            C.llama_sampler_apply(self.grammar, ctypes.byref(array))
        C.llama_sampler_apply(self.ptr, ctypes.byref(array))
        # The samplers may shrink and reorder the array in place; `selected` indexes that view.
        chosen = ctypes.cast(array.data, ctypes.POINTER(C.llama_token_data))[array.selected]
        return int(chosen.id)

    def _grammar_allows(self, token: int) -> bool:
        self._one["id"] = token
        self._one["logit"] = 0.0
        array = _as_token_data_array(self._one)
        C.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return bool(np.isfinite(self._one["logit"][0]))

    def close(self) -> None:
        if self.ptr:
            C.llama_sampler_free(self.ptr)
            self.ptr = None
        if self.grammar:
            C.llama_sampler_free(self.grammar)
            self.grammar = None


_LIKELIEST = 1024  # a set of the likeliest tokens a refused draw tries, when the grammar admits enough of them
# Tokens this close to the likeliest (in logits) are a few hundred to a few thousand on Gemma 3 in
# free text, and far cheaper to find than the likeliest 1,024 (0.05 ms against 2.6 on 262k).
_SPREADS = (8.0, 12.0)
_MOST_NEAR = 8 * _LIKELIEST  # more than this many near the likeliest: a flat distribution
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _with(ids: np.ndarray, token: int) -> np.ndarray:
    return np.union1d(ids, np.array([token], dtype=np.int32)).astype(np.int32)


def _likeliest(logits: np.ndarray) -> Iterator[np.ndarray]:
    """Sets of the likeliest tokens, smallest first: every token more likely than one in a set is in
    it, so when the grammar admits at least top-k of a set, the chain's top-k is the same on it as
    on the whole vocabulary. Those within each of `_SPREADS` of the likeliest, then the likeliest
    1,024 (found the slow way, where the distribution is flat), unless a set tried held them."""
    top, tried = logits.max(), 0
    for spread in _SPREADS:
        near = np.flatnonzero(logits >= top - spread).astype(np.int32)
        if not 0 < len(near) <= _MOST_NEAR:  # (none: the logits are not numbers)
            break
        tried = len(near)
        yield near
    if tried < _LIKELIEST:
        yield np.argpartition(logits, -_LIKELIEST)[-_LIKELIEST:].astype(np.int32)


def _as_token_data_array(candidates: np.ndarray) -> C.llama_token_data_array:
    return C.llama_token_data_array(
        data=candidates.ctypes.data_as(C.llama_token_data_p),
        size=len(candidates),
        selected=-1,
        sorted=False,
    )
