"""`simularity bench decode`: the session's streaming speed against a raw llama-cpp-python loop.

Both sides load the same GGUF with the same context size, batch and threads, read the same prompt
and sample with the same settings and seeds. The session is measured as a player gets it: text
pieces arriving on the asyncio event loop. The baseline is `Llama.generate`, token ids only (no
text), stopping at the same end-of-generation tokens. Rounds alternate between the two so that
drift in machine load hits both; the figure is the ratio of median tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import llama_cpp
from llama_cpp import Llama
from rich.console import Console

from ..engine import GenerationParams, LlamaSession, SamplingParams
from ..settings import Settings
from .baseline import baseline_sampling, load_baseline, prepared_model_path
from .script import BENCH_SAMPLING

PROMPT = (
    "The old lighthouse keeper climbed the spiral stairs for the last time that winter. "
    "She remembered every storm, every ship and every stranger who had knocked on her door, "
    "and tonight she meant to write them all down. Her story began like this:\n\n"
)


@dataclass(frozen=True)
class DecodeRound:
    side: str
    seed: int
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens - 1) / self.seconds


def run_decode_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    console = Console(stderr=True)
    path = prepared_model_path(settings, model_override, console)
    config = settings.model_config_for(path)
    sampling = BENCH_SAMPLING
    console.print(f"Loading {path.name} twice (session and baseline), n_ctx={config.n_ctx}…")
    session = LlamaSession.open_blocking(config)
    baseline = load_baseline(path, config.n_ctx, config.n_batch, session.info.n_threads, config.n_gpu_layers)
    prompt = [*([session.bos_token] if session.bos_token is not None else []), *session.tokenize(PROMPT)]
    rounds: list[DecodeRound] = []
    try:
        for number in range(args.rounds):
            seed = 1000 + number
            rounds.append(_time_session(session, prompt, sampling, seed, args.tokens))
            rounds.append(_time_baseline(baseline, prompt, sampling, seed, args.tokens))
            console.print(
                f"round {number + 1}/{args.rounds}: "
                f"session {rounds[-2].tokens_per_second:.1f} tok/s, baseline {rounds[-1].tokens_per_second:.1f} tok/s"
            )
    finally:
        session.close_blocking()
    session_rate = statistics.median(r.tokens_per_second for r in rounds if r.side == "session")
    baseline_rate = statistics.median(r.tokens_per_second for r in rounds if r.side == "baseline")
    ratio = session_rate / baseline_rate
    print(
        f"model: {session.info.description} ({path.name}), threads: {session.info.n_threads}, "
        f"n_ctx: {config.n_ctx}, tokens/generation: {args.tokens}, rounds: {args.rounds}"
    )
    print(f"session  (async stream, text): {session_rate:7.1f} tok/s (median)")
    print(f"baseline (Llama.generate, ids): {baseline_rate:7.1f} tok/s (median)")
    print(f"ratio: {ratio:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "decode",
                    "model": str(path),
                    "threads": session.info.n_threads,
                    "n_ctx": config.n_ctx,
                    "tokens": args.tokens,
                    "sampling": asdict(sampling),
                    "session_tokens_per_second": session_rate,
                    "baseline_tokens_per_second": baseline_rate,
                    "ratio": ratio,
                    "rounds": [asdict(r) | {"tokens_per_second": r.tokens_per_second} for r in rounds],
                },
                indent=2,
            )
        )
    return 0


def _time_session(session: LlamaSession, prompt: list[int], sampling: SamplingParams, seed: int, n: int) -> DecodeRound:
    # No token healing: the baseline has none, and this measures decoding.
    params = GenerationParams(sampling=SamplingParams(**{**asdict(sampling), "seed": seed}), max_tokens=n, heal=False)

    async def stream() -> DecodeRound:
        generation = session.generate(prompt, params)
        first = last = 0.0
        async for _piece in generation:
            last = time.perf_counter()
            first = first or last
        result = await generation.result()
        return DecodeRound("session", seed, result.generated_tokens, last - first)

    return asyncio.run(stream())


def _time_baseline(llm: Llama, prompt: list[int], sampling: SamplingParams, seed: int, n: int) -> DecodeRound:
    llm.reset()
    llm.set_seed(seed)
    count = 0
    first = last = 0.0
    for token in llm.generate(prompt, reset=True, **baseline_sampling(sampling)):  # type: ignore[arg-type]
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        last = time.perf_counter()
        first = first or last
        count += 1
        if count >= n:
            break
    return DecodeRound("baseline", seed, count, last - first)
