"""`simularity bench resume`: resuming a long game from its KV state file vs. reading it again.

The scripted conversation is played until the context is nearly full; the KV state is saved. Then,
in alternating rounds from an empty KV: the next turn's time to first token when the whole window
is re-evaluated, and when the state file is restored first (the restore counted in).

Last, the path a resumed game takes (engine/resume_path.py) is weighed from an empty KV with what
the session measured on this machine, and again as it would be where prefill ran twice the speed
at which re-evaluating starts to win (a GPU, say).

With `--backend` on llama-server started with `--slot-save-path`, the same on the server: the
game's slot saved to a slot file, then the next turn from an erased slot, restoring the file first
or reading the window again (engine/remote/slots.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from ..engine import GenerationParams, ModelSession, Prompt
from ..engine.resume_path import ResumeChoice, choose_resume
from ..errors import UserFacingError
from ..settings import Settings
from .baseline import measure_where_set
from .script import ScriptedGame, reply_params

FULL = 0.9  # "a game that fills the context": the window holds at least this share of it


def run_resume_bench(args: argparse.Namespace, settings: Settings, model_override: Path | None) -> int:
    where, threads, figures = measure_where_set(settings, model_override, lambda s, c: _measure(s, args, c))
    figures["settings"] = {"model": where, "n_ctx": args.n_ctx, "threads": threads, "rounds": args.rounds}
    size = figures["state_file_bytes"]
    saved = (
        f"state file {size / 2**20:.1f} MiB"
        if threads is not None
        else f"slot file on the server, sidecar {size:,} bytes"
    )
    print(f"window: {figures['window_tokens']:,} tokens after {figures['turns_played']} turns; {saved}")
    print(f"re-evaluate: {figures['reevaluate_ttft_s'] * 1000:.0f} ms to first token (median)")
    print(
        f"restore:     {figures['restore_ttft_s'] * 1000:.0f} ms to first token, "
        f"of which {figures['restore_load_s'] * 1000:.0f} ms reading the file (median)"
    )
    if (path_taken := figures["resume_path"]) is not None:
        faster = path_taken["if_prefill_faster"]
        print(f"resume path on this machine: {path_taken['choice']} ({_estimates(path_taken)})")
        print(
            f"  re-evaluating would win above {path_taken['break_even_prefill_tokens_per_s']:,.0f} tokens/s; "
            f"at {faster['prefill_tokens_per_s']:,.0f}: {faster['choice']} ({_estimates(faster)})"
        )
    print(f"ratio: {figures['ratio']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


async def _measure(session: ModelSession, args: argparse.Namespace, console: Console) -> dict:
    if not getattr(session, "saves_cache", True):  # a server with no slot of the game's own: say so now
        raise _nothing_to_resume(session)
    game = ScriptedGame(session)
    turn = 0
    console.print(f"Playing until the {session.n_ctx:,}-token context is {FULL:.0%} full…")
    while len(session.kv_tokens) < FULL * session.n_ctx:
        await game.play(turn, 40)
        turn += 1
    window_tokens = len(session.kv_tokens)
    next_prompt = game.prompt(turn)
    first_token_only = replace(reply_params(turn, 1, heal=True), max_tokens=1)
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory) / "resume.kv"
        size = await session.save_state(state)
        if not size:
            raise _nothing_to_resume(session)
        reevaluate, restore, load = [], [], []
        for _round in range(args.rounds):
            await session.reset()
            reevaluate.append(await _first_token(session, next_prompt, first_token_only))
            await session.reset()
            started = time.perf_counter()
            restored = await session.restore_state(state)
            assert restored.warning is None, restored.warning
            load.append(time.perf_counter() - started)
            restore.append(load[-1] + await _first_token(session, next_prompt, first_token_only))
        await session.reset()  # as a game resumes: nothing in the KV yet
        weigh = getattr(session, "resume_choice", None)  # the in-process engine's; a server restores
        choice = await weigh(state) if weigh is not None else None
    return {
        "turns_played": turn,
        "window_tokens": window_tokens,
        "state_file_bytes": size,
        "reevaluate_ttft_s": statistics.median(reevaluate),
        "restore_ttft_s": statistics.median(restore),
        "restore_load_s": statistics.median(load),
        "ratio": statistics.median(reevaluate) / statistics.median(restore),
        "rounds": {"reevaluate_s": reevaluate, "restore_s": restore, "load_s": load},
        "resume_path": _path_figures(choice) if choice is not None else None,
    }


def _nothing_to_resume(session: ModelSession) -> UserFacingError:
    on_server = hasattr(session, "saves_cache")
    return UserFacingError(
        f"{session.info.description} keeps no cache to resume from.",
        hint="Start llama-server with --slot-save-path DIR and one slot (--parallel 1)."
        if on_server
        else "This model's memory cannot be saved to a state file (a recurrent model, say).",
    )


def _path_figures(choice: ResumeChoice) -> dict:
    """The path taken, and the one it would take where prefill ran twice the break-even speed."""
    faster = choose_resume(
        choice.state_bytes,
        choice.tokens,
        restore_bytes_per_s=choice.restore_bytes_per_s,
        prefill_tokens_per_s=2 * choice.break_even_tokens_per_s,
    )
    return {
        **_choice_figures(choice),
        "break_even_prefill_tokens_per_s": choice.break_even_tokens_per_s,
        "if_prefill_faster": _choice_figures(faster),
    }


def _choice_figures(choice: ResumeChoice) -> dict:
    return {
        "choice": choice.path,
        "restore_estimate_s": choice.restore_s,
        "reevaluate_estimate_s": choice.reevaluate_s,
        "state_file_bytes": choice.state_bytes,
        "tokens": choice.tokens,
        "restore_bytes_per_s": choice.restore_bytes_per_s,
        "prefill_tokens_per_s": choice.prefill_tokens_per_s,
    }


def _estimates(figures: dict) -> str:
    reevaluate = figures["reevaluate_estimate_s"]
    said = "unknown" if reevaluate is None else f"{reevaluate * 1000:,.0f} ms"
    return f"estimates: restore {figures['restore_estimate_s'] * 1000:,.0f} ms, re-evaluate {said}"


async def _first_token(session: ModelSession, prompt: Prompt, params: GenerationParams) -> float:
    started = time.perf_counter()
    generation = session.generate(prompt, params)
    async for _piece in generation:
        pass
    await generation.result()
    return time.perf_counter() - started
