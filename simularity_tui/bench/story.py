"""`simularity bench story`: a whole story game, with stage commands, lore, achievements and
summaries, on the embedded model: no error over hundreds of turns, and the time to first token
stays flat (the median of the last 50 turns against turns 5–25, in the same run). And lore
matching on a book of 5,000 entries, per line, against a regex per entry and key (bench/lore.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from ..engine import ModelSession
from ..scenario import bundled_packs_dir, load_pack
from ..settings import Settings
from ..story import Budgets, Game
from .baseline import measure_on_server, measure_on_session
from .lore import measure_lore
from .script import BENCH_SAMPLING, PLAYER_LINES, SEED_BASE


def run_story_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    threads: int | None = None  # a server's are its own
    if settings.model.backend:
        where, figures = measure_on_server(settings, lambda s, c: _play(s, args, c))
    else:
        path, model, figures = measure_on_session(settings, model_override, lambda s, c: _play(s, args, c))
        where, threads = str(path), model.n_threads
    figures["settings"] = {
        "model": where, "pack": "lighthouse", "episode": "storm", "turns": args.turns, "n_ctx": args.n_ctx,
        "line_tokens": args.reply_tokens, "direction_tokens": 24, "threads": threads,
        "seeds": f"{SEED_BASE} + turn",
    }  # fmt: skip
    figures["lore"] = lore = measure_lore(load_pack(bundled_packs_dir() / "lighthouse").pack)
    ttft = figures["ttft_s"]
    early = statistics.median(ttft[4:25] or ttft)
    last = statistics.median(ttft[-50:])
    figures["checks"] = {"ttft_last50_over_turns5to25": last / early, "median_ttft_turns5to25_s": early,
                         "median_ttft_last50_s": last}  # fmt: skip
    print(f"story: {args.turns} turns at n_ctx {args.n_ctx}, no error; {figures['summaries']} summaries written, "
          f"{len(figures['achievements'])} achievements, {figures['stage_commands']} stage commands")  # fmt: skip
    print(f"median time to first text: turns 5-25 {early * 1000:.0f} ms, last 50 {last * 1000:.0f} ms")
    print(f"summary turns: median {statistics.median(figures['summary_s'] or [0]) * 1000:.0f} ms to write the summary")
    print(f"lore matching on {lore['entries']:,} entries: {lore['ms_per_line']:.2f} ms per line (target < 5); "
          f"a regex per entry and key: {lore['baseline_ms_per_line']:.1f} ms; ratio {lore['ratio']:.3f}")  # fmt: skip
    print(f"ttft last 50 / turns 5-25: {last / early:.2f} (target <= 1.5)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


async def _play(session: ModelSession, args: argparse.Namespace, console: Console) -> dict:
    game = Game(
        session, load_pack(bundled_packs_dir() / "lighthouse"), "storm",
        sampling=BENCH_SAMPLING,
        budgets=Budgets(line=args.reply_tokens),
    )  # fmt: skip
    ttft, evaluated, summary_s = [], [], []
    summaries = commands = 0
    for turn_number in range(args.turns):
        line = PLAYER_LINES[turn_number % len(PLAYER_LINES)]
        started = time.perf_counter()
        game.sampling = replace(game.sampling, seed=SEED_BASE + turn_number)
        turn = game.say(line)
        async for _piece in turn:
            pass
        ttft.append((turn.first_text_at or time.perf_counter()) - started)
        evaluated.append(turn.evaluated_tokens)
        commands += len(turn.directions)
        if turn.summary_written:
            summaries += 1
            summary_s.append(time.perf_counter() - (turn.first_text_at or started))
        if turn_number % 25 == 24:
            console.print(f"turn {turn_number + 1}/{args.turns}: ttft {ttft[-1] * 1000:.0f} ms, "
                          f"{summaries} summaries, context {len(session.kv_tokens)}")  # fmt: skip
    return {
        "ttft_s": ttft,
        "prefill_tokens": evaluated,
        "summaries": summaries,
        "summary_s": summary_s,
        "stage_commands": commands,
        "achievements": sorted(game.unlocked),
        "lines": len(game.lines),
        "final_summary": game.summary,
    }
