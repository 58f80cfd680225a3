"""`simularity bench long-session`: a long scripted conversation, three ways (five with
`--peers 1`), in one run.

- engine: this session (prefix reuse, context shift, token healing);
- naive: what a typical frontend does: rebuild the prompt text each turn (pinned block plus as many
  recent turns as fit) and call llama-cpp-python's `create_completion` on one `Llama` (its own prefix
  matching included);
- lower_bound: only each turn's new tokens, on a context big enough never to evict anything;
- with `--peers 1`, llama.cpp's own llama-server sent the same kind of prompt text (built from its
  own replies) on its native `/completion`, one slot, prompt cache on:
  - llama_server_naive: its prefix cache only;
  - llama_server_cache_reuse: with `--cache-reuse 256`, which moves chunks of the cached prompt
    that reappear further on into place (KoboldCpp's ContextShift does the same).

Turns run interleaved (engine, naive, the peers, lower bound for turn 1, then turn 2, …), so that
changes in machine load hit all alike. Per turn: prompt tokens evaluated, and time to first token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from llama_cpp import Llama
from rich.console import Console
from rich.table import Table

from ..engine import LlamaSession
from ..engine.chat_template import ChatFrame
from ..engine.config import SamplingParams
from ..engine.context_window import LOW_WATER
from ..engine.kv_cache import REFRESH_TOKENS
from ..engine.remote.llama_server import LlamaServer, LlamaServerSpec, llama_server_binary
from ..errors import UserFacingError
from ..settings import Settings
from .baseline import baseline_sampling, load_baseline, prepared_model_path
from .script import PLAYER_LINES, SEED_BASE, SUMMARIES, ScriptedGame, pinned_text, player_text, reply_params
from .steering import Steering, first_line_in_view

STRATEGIES = ("engine", "naive", "lower_bound")
PEERS = ("llama_server_naive", "llama_server_cache_reuse")
CACHE_REUSE = 256  # llama-server's --cache-reuse: the shortest cached chunk it moves rather than re-reads
PEER_TIMEOUT_S = 300.0  # one turn on a slow machine, prompt and reply


@dataclass
class Peer:
    """A llama-server played the naive way: `turns` are the texts of its own past turns."""

    name: str
    server: LlamaServer
    turns: list[str] = field(default_factory=list)


def run_long_session_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    console = Console(stderr=True)
    path = prepared_model_path(settings, model_override, console)
    config = settings.model_config_for(path)
    engine_config = config
    binary = llama_server_binary() if args.peers else None  # one missing is said before any model loads
    # The lower bound never evicts: room for every turn (player line, reply, separators).
    roomy = min(32768, -(-(600 + args.turns * (args.reply_tokens + 40)) // 256) * 256)
    console.print(f"Loading {path.name}: engine and naive at n_ctx={args.n_ctx}, lower bound at n_ctx={roomy}…")
    engine = LlamaSession.open_blocking(engine_config)
    lower = LlamaSession.open_blocking(replace(config, n_ctx=roomy))
    naive = load_baseline(path, args.n_ctx, config.n_batch, engine.info.n_threads, config.n_gpu_layers)
    # The servers' logs: kept where the run fails (that is where a server says why), removed after.
    logs = Path(tempfile.mkdtemp(prefix="simularity-bench-peers-")) if binary else None
    threads = engine.info.n_threads
    peers = _peers(binary, logs, path, args.n_ctx, threads, config.n_gpu_layers) if binary and logs else []
    build = None
    try:
        for peer in peers:
            console.print(f"Starting llama-server ({peer.name}), its log in {peer.server.log}…")
            peer.server.start()
        with httpx.Client(timeout=PEER_TIMEOUT_S) as client:
            build = _server_build(client, peers[0].server) if peers else None
            figures = asyncio.run(_play_all(args, engine, lower, naive, peers, client, console))
    finally:
        for peer in peers:
            peer.server.stop()  # nothing to do for one that never started
        engine.close_blocking()
        lower.close_blocking()
    if logs is not None:
        shutil.rmtree(logs, ignore_errors=True)
    figures["settings"] = {
        "model": str(path),
        "model_description": engine.info.description,
        "turns": args.turns,
        "n_ctx": args.n_ctx,
        "lower_bound_n_ctx": roomy,
        "reply_tokens": args.reply_tokens,
        "threads": engine.info.n_threads,
        "seeds": f"{SEED_BASE} + turn",
        "low_water": LOW_WATER,
        "refresh_tokens": REFRESH_TOKENS,
        "context_shift": engine.info.context_shift,
        "chat_template": engine.chat_frame.name,
        "authors_note": bool(args.authors_note),
        "lore_entries": args.lore,
        "peers": bool(args.peers),
        "llama_server_build": build,
        "llama_server_cache_reuse": CACHE_REUSE if peers else None,
    }
    checks = _checks(figures, args.turns)
    figures["checks"] = checks
    _print_table(figures, checks)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _peers(binary: Path, logs: Path, model: Path, n_ctx: int, threads: int, gpu_layers: int) -> list[Peer]:
    """The two llama-servers (not started yet), each with one slot of the naive frontend's context."""
    spec = LlamaServerSpec(model, n_ctx_per_slot=n_ctx, threads=threads, gpu_layers=gpu_layers)
    return [
        Peer(PEERS[0], LlamaServer(binary, spec, logs / f"{PEERS[0]}.log")),
        Peer(PEERS[1], LlamaServer(binary, replace(spec, cache_reuse=CACHE_REUSE), logs / f"{PEERS[1]}.log")),
    ]


def _server_build(client: httpx.Client, server: LlamaServer) -> str | None:
    """llama-server's own word for its build (GET /props); None where it does not say."""
    response = client.get(f"{server.url}/props", headers=_auth(server))
    build = response.json().get("build_info") if response.status_code == 200 else None
    return build if isinstance(build, str) else None


def _auth(server: LlamaServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


async def _play_all(
    args: argparse.Namespace,
    engine: LlamaSession,
    lower: LlamaSession,
    naive: Llama,
    peers: list[Peer],
    client: httpx.Client,
    console: Console,
) -> dict:
    steering = Steering(
        lambda text: len(engine.tokenize(text)), engine.n_ctx, authors_note=bool(args.authors_note), lore=args.lore
    )
    engine_game, lower_game = ScriptedGame(engine), ScriptedGame(lower)
    naive_turns: list[str] = []
    strategies: dict[str, dict[str, list[float]]] = {
        name: {"prefill_tokens": [], "ttft_s": []} for name in (*STRATEGIES, *(peer.name for peer in peers))
    }
    shifts = 0
    for turn in range(args.turns):
        in_view = first_line_in_view(engine_game.turns, len(engine_game.pinned), len(engine.kv_tokens))
        notes = steering.before(PLAYER_LINES[turn % len(PLAYER_LINES)], in_view)
        result = await engine_game.play(turn, args.reply_tokens, notes=notes)
        steering.after(engine.detokenize(result.tokens))
        shifts += result.shifted_tokens > 0
        _record(strategies["engine"], result.evaluated_tokens, result.first_token_s)
        _record(strategies["naive"], *_naive_turn(naive, naive_turns, turn, args, engine.chat_frame, notes))
        for peer in peers:
            _record(strategies[peer.name], *_peer_turn(client, peer, naive, turn, args, engine.chat_frame, notes))
        floor = await lower_game.play(turn, args.reply_tokens, heal=False, notes=notes)
        _record(strategies["lower_bound"], floor.evaluated_tokens, floor.first_token_s)
        if turn % 10 == 9 or turn == args.turns - 1:
            console.print(
                f"turn {turn + 1}/{args.turns}: ttft engine {result.first_token_s * 1000:.0f} ms, "
                f"naive {strategies['naive']['ttft_s'][-1] * 1000:.0f} ms, "
                f"lower bound {floor.first_token_s * 1000:.0f} ms; engine context {len(engine.kv_tokens)}"
                + "".join(f"; {peer.name} {strategies[peer.name]['ttft_s'][-1] * 1000:.0f} ms" for peer in peers)
            )
    # What replacing the summary in the pinned block costs: the window after it is read again.
    engine_game.set_summary(SUMMARIES[1])
    changed = await engine_game.play(args.turns, args.reply_tokens)
    return {
        **strategies,
        "engine_shifts": shifts,
        "lore_notes": steering.notes_brought,
        "authors_notes": steering.notes_repeated,
        "summary_change": {"prefill_tokens": changed.evaluated_tokens, "ttft_s": changed.first_token_s},
    }


def _naive_prompt(
    llm: Llama, turns: list[str], turn: int, args: argparse.Namespace, frame: ChatFrame, notes: str
) -> tuple[str, str]:
    """The prompt text a typical frontend builds: the pinned block, as many recent turns as fit
    beside the reply, the new player text; returns (prompt, new player text). The pinned text goes
    in the same chat frame as the engine's (its control tokens read as such)."""
    pinned = frame.opening + pinned_text(SUMMARIES[0]) + frame.closing
    new = player_text(turn, notes)
    budget = args.n_ctx - args.reply_tokens - len(_tokens(llm, pinned + new))
    kept: list[str] = []
    for text in reversed(turns):
        budget -= len(_tokens(llm, text, bos=False))
        if budget < 0:
            break
        kept.insert(0, text)
    return pinned + "".join(kept) + new, new


def _naive_turn(
    llm: Llama, turns: list[str], turn: int, args: argparse.Namespace, frame: ChatFrame, notes: str
) -> tuple[int, float]:
    """One turn the way a typical frontend plays it; returns (tokens evaluated, time to first token)."""
    prompt, new = _naive_prompt(llm, turns, turn, args, frame, notes)
    tokens = _tokens(llm, prompt)
    cached = list(llm.input_ids[: llm.n_tokens])
    reused = 0
    for a, b in zip(cached, tokens):
        if a != b:
            break
        reused += 1
    evaluated = len(tokens) - min(reused, len(tokens) - 1)
    params = reply_params(turn, args.reply_tokens, heal=False).sampling
    started = time.perf_counter()
    first = 0.0
    reply = ""
    for chunk in llm.create_completion(
        prompt,
        max_tokens=args.reply_tokens,
        seed=params.seed,
        stream=True,
        **_completion_sampling(params),  # type: ignore[arg-type]
    ):
        first = first or time.perf_counter()
        reply += chunk["choices"][0]["text"]  # type: ignore[index]  # streamed chunks are dicts
    turns.append(new + reply + "\n")
    return evaluated, (first or time.perf_counter()) - started


def _completion_sampling(params: SamplingParams) -> dict[str, float | int]:
    """The bench's sampler settings under the names create_completion and llama-server both take."""
    sampling = baseline_sampling(params)
    sampling["temperature"] = sampling.pop("temp")
    return sampling


def _peer_turn(
    client: httpx.Client, peer: Peer, llm: Llama, turn: int, args: argparse.Namespace, frame: ChatFrame, notes: str
) -> tuple[int, float]:
    """One turn of the naive frontend's on llama-server: (prompt tokens it evaluated, time to first text).
    `llm` only counts tokens for the trimming: the server loaded the same model file."""
    prompt, new = _naive_prompt(llm, peer.turns, turn, args, frame, notes)
    params = reply_params(turn, args.reply_tokens, heal=False).sampling
    body = {
        "prompt": prompt,
        "n_predict": args.reply_tokens,
        "stream": True,
        "cache_prompt": True,
        "id_slot": 0,
        "seed": params.seed,
        # create_completion's window for the repeat penalty is the Llama's last_n_tokens_size, 64.
        "repeat_last_n": params.repeat_last_n,
        **_completion_sampling(params),
    }
    reply, evaluated, ttft = _stream_completion(client, peer.server, body)
    peer.turns.append(new + reply + "\n")
    return evaluated, ttft


def _stream_completion(client: httpx.Client, server: LlamaServer, body: dict[str, Any]) -> tuple[str, int, float]:
    """POST /completion, streamed: (the text, prompt tokens evaluated, seconds to the first text).
    The count is the server's own (`timings.prompt_n` in the last chunk): what it did not find in
    its cache, or moved there with --cache-reuse."""
    reply, evaluated, first = "", None, 0.0
    started = time.perf_counter()
    with client.stream("POST", f"{server.url}/completion", json=body, headers=_auth(server)) as response:
        if response.status_code != 200:
            response.read()
            raise UserFacingError(
                f"llama-server answered {response.status_code}: {response.text[:300]}", hint=f"Its log: {server.log}"
            )
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue  # the blank lines between server-sent events
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:  # a failure after the answer started: its status was 200
                raise UserFacingError(f"llama-server failed: {chunk['error']}", hint=f"Its log: {server.log}")
            if chunk.get("content"):
                first = first or time.perf_counter()
                reply += chunk["content"]
            if isinstance(chunk.get("timings"), dict):
                evaluated = chunk["timings"].get("prompt_n")
    if not isinstance(evaluated, int):
        raise UserFacingError("llama-server's reply did not say how many prompt tokens it evaluated (timings.prompt_n)")
    return reply, evaluated, (first or time.perf_counter()) - started


def _tokens(llm: Llama, text: str, *, bos: bool = True) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)  # as create_completion does


def _record(strategy: dict, prefill: int, ttft: float) -> None:
    strategy["prefill_tokens"].append(prefill)
    strategy["ttft_s"].append(ttft)


def _checks(figures: dict, turns: int) -> dict:
    """The issue's targets, computed on whatever turns there are (turns 5–25 and the last 50)."""
    early = slice(4, 25)
    last = slice(max(0, turns - 50), turns)
    engine, naive, lower = figures["engine"], figures["naive"], figures["lower_bound"]
    engine_early = statistics.median(engine["ttft_s"][early] or engine["ttft_s"])
    engine_last = statistics.median(engine["ttft_s"][last])
    naive_last = statistics.median(naive["ttft_s"][last])
    return {
        "engine_ttft_last50_over_turns5to25": engine_last / engine_early,
        "engine_ttft_last50_over_naive_last50": engine_last / naive_last,
        "engine_prefill_over_lower_bound": sum(engine["prefill_tokens"]) / sum(lower["prefill_tokens"]),
        "engine_median_ttft_turns5to25_s": engine_early,
        "engine_median_ttft_last50_s": engine_last,
        "naive_median_ttft_last50_s": naive_last,
        **(_peer_checks(figures, engine_last, last) if "llama_server_cache_reuse" in figures else {}),
    }


def _peer_checks(figures: dict, engine_last: float, last: slice) -> dict:
    """The engine against llama-server's --cache-reuse: as fast at the end, no more tokens read."""
    engine, reuse = figures["engine"], figures["llama_server_cache_reuse"]
    reuse_last = statistics.median(reuse["ttft_s"][last])
    return {
        "engine_ttft_last50_over_cache_reuse_last50": engine_last / reuse_last,
        "engine_prefill_over_cache_reuse": sum(engine["prefill_tokens"]) / sum(reuse["prefill_tokens"]),
        "cache_reuse_median_ttft_last50_s": reuse_last,
    }


def _print_table(figures: dict, checks: dict) -> None:
    settings = figures["settings"]
    title = f"long session: {settings['turns']} turns, n_ctx {settings['n_ctx']}, template {settings['chat_template']}"
    table = Table(title=title)
    table.add_column("strategy", justify="right", no_wrap=True)  # llama_server_cache_reuse, whole
    for column in ("prefill tokens (total)", "median ttft, turns 5-25", "median ttft, last 50"):
        table.add_column(column, justify="right")
    turns = figures["settings"]["turns"]
    for name in (*STRATEGIES, *(PEERS if settings["peers"] else ())):
        data = figures[name]
        early = data["ttft_s"][4:25] or data["ttft_s"]
        last = data["ttft_s"][max(0, turns - 50) :]
        table.add_row(
            name,
            f"{sum(data['prefill_tokens']):,}",
            f"{statistics.median(early) * 1000:.0f} ms",
            f"{statistics.median(last) * 1000:.0f} ms",
        )
    Console().print(table)
    change = figures["summary_change"]
    print(
        f"engine shifts: {figures['engine_shifts']}; steering: {figures['lore_notes']} lore notes, "
        f"{figures['authors_notes']} author's note copies; summary change: {change['prefill_tokens']} tokens "
        f"re-read, {change['ttft_s'] * 1000:.0f} ms to first token"
    )
    print(f"engine ttft last 50 / turns 5-25: {checks['engine_ttft_last50_over_turns5to25']:.2f} (target <= 1.5)")
    print(f"engine ttft / naive ttft, last 50: {checks['engine_ttft_last50_over_naive_last50']:.2f} (target <= 0.25)")
    print(f"engine prefill / lower bound: {checks['engine_prefill_over_lower_bound']:.2f} (target <= 1.2)")
    if settings["peers"]:
        ttft = checks["engine_ttft_last50_over_cache_reuse_last50"]
        print(f"engine ttft / llama-server --cache-reuse ttft, last 50: {ttft:.2f} (target <= 1.0)")
        prefill = checks["engine_prefill_over_cache_reuse"]
        print(f"engine prefill / llama-server --cache-reuse prefill: {prefill:.2f} (target <= 1.0)")
