"""`simularity bench decode` runs both sides and ends with the ratio line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `simularity bench …` as a player would; it must succeed. Its threads are the model tests'
    (tests/conftest.py: one beside another xdist worker, where two only took turns on the cores):
    these tests check what a bench reports and ratios of sides measured alike, not speed."""
    run = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "bench", *args, "--threads", str(TEST_THREADS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return run


def test_bench_decode_reports_a_ratio(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "decode.json"
    run = bench("decode", "--tokens", "24", "--rounds", "2", "--json", str(out))
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio: \d+\.\d\d", last)
    figures = json.loads(out.read_text())
    assert len(figures["rounds"]) == 4 and {r["side"] for r in figures["rounds"]} == {"session", "baseline"}
    assert figures["ratio"] == figures["session_tokens_per_second"] / figures["baseline_tokens_per_second"]
    assert f"{figures['ratio']:.2f}" == last.split()[-1]


@pytest.mark.server  # starts two llama-servers on loopback
def test_bench_long_session_measures_five_strategies_per_turn_with_peers(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "long.json"
    # Short replies: the checks count prompt tokens, and each reply token costs a decode on each of the
    # five sides. With 4-token replies the window first slides at turn 16: the naive sides re-read it
    # on each of the last three turns, which keeps their total well past twice the engine's (~2.7x).
    run = bench(
        "long-session", "--turns", "18", "--n-ctx", "512", "--reply-tokens", "4", "--peers", "1", "--json", str(out)
    )
    figures = json.loads(out.read_text())
    settings = figures["settings"]
    assert settings["authors_note"] is False and settings["lore_entries"] == 0 and settings["peers"] is True
    assert isinstance(settings["llama_server_build"], str) and settings["llama_server_cache_reuse"] == 256
    for strategy in ("engine", "naive", "lower_bound", "llama_server_naive", "llama_server_cache_reuse"):
        assert len(figures[strategy]["prefill_tokens"]) == len(figures[strategy]["ttft_s"]) == 18, strategy
        assert all(t > 0 for t in figures[strategy]["ttft_s"]), strategy
    assert settings["n_ctx"] == 512 and settings["turns"] == 18
    assert figures["engine_shifts"] >= 1  # 18 turns overflow 512 tokens
    # The naive frontend re-reads its window once it slides; the engine reads about the new tokens.
    engine = figures["engine"]["prefill_tokens"]
    assert sum(figures["naive"]["prefill_tokens"]) > 2 * sum(engine)
    # So does llama-server given the same prompts (after the first turn, which all read whole)…
    server = figures["llama_server_naive"]["prefill_tokens"]
    assert sum(server[1:]) > 2 * sum(engine[1:]) and max(server[1:]) > 200
    # … unless --cache-reuse moves the window's cached turns into place instead.
    assert sum(figures["llama_server_cache_reuse"]["prefill_tokens"]) < 0.7 * sum(server)
    assert "engine prefill / lower bound:" in run.stdout
    assert "engine prefill / llama-server --cache-reuse prefill:" in run.stdout
    assert figures["checks"]["engine_prefill_over_cache_reuse"] > 0


def test_bench_resume_compares_restore_with_reevaluation(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "resume.json"
    run = bench("resume", "--n-ctx", "256", "--rounds", "1", "--json", str(out))  # the smallest: a turn fills it
    figures = json.loads(out.read_text())
    assert figures["window_tokens"] >= 0.9 * 256
    assert figures["ratio"] == figures["reevaluate_ttft_s"] / figures["restore_ttft_s"]
    assert re.fullmatch(r"ratio: \d+\.\d", run.stdout.strip().splitlines()[-1])
    # The path a resumed game takes, from what the run measured: restoring, on a CPU.
    path = figures["resume_path"]
    assert path["choice"] == "restore" and path["reevaluate_estimate_s"] > path["restore_estimate_s"] > 0
    assert path["state_file_bytes"] == figures["state_file_bytes"] and path["tokens"] == figures["window_tokens"]
    # Where prefill ran past the break-even speed (a GPU), it would re-evaluate.
    faster = path["if_prefill_faster"]
    assert faster["prefill_tokens_per_s"] > path["break_even_prefill_tokens_per_s"] > path["prefill_tokens_per_s"]
    assert faster["choice"] == "re-evaluate" and faster["reevaluate_estimate_s"] < faster["restore_estimate_s"]
    assert "resume path on this machine: restore (estimates: restore " in run.stdout
    assert re.search(r"re-evaluating would win above [\d,]+ tokens/s; at [\d,]+: re-evaluate", run.stdout)


def test_bench_story_plays_a_whole_game(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "story.json"
    run = bench(
        "story", "--turns", "12", "--n-ctx", "768", "--reply-tokens", "16", "--think-ms", "1500", "--json", str(out)
    )
    figures = json.loads(out.read_text())
    assert len(figures["ttft_s"]) == len(figures["prefill_tokens"]) == 12 and figures["lines"] >= 12 * 2
    assert figures["summaries"] >= 1  # 12 turns overflow 768 tokens: memory was written, between turns
    assert figures["ttft_p50_s"] <= figures["ttft_p95_s"] <= figures["ttft_p99_s"] <= figures["ttft_max_s"]
    assert figures["ttft_max_s"] == max(figures["ttft_s"])
    assert figures["summary_wait_turns"] == 0  # written beside the story: never in a turn's way
    engine = figures["engine_first_token_s"]  # inside the engine: a part of each turn's wait
    assert all(0 < inside <= turn for inside, turn in zip(engine, figures["ttft_s"], strict=True))
    assert figures["checks"]["engine_p95_over_p50"] >= 1 and "the engine's own read and first draw" in run.stdout
    assert figures["first_text_over_first_token"] >= 1  # text comes with or after the first token
    stolen = figures["stolen_s"]  # the hypervisor's time while each turn waited: a part of that wait
    assert len(stolen) == 12 and all(lost >= 0 for lost in stolen)
    assert figures["ttft_net_max_s"] == max(wait - lost for wait, lost in zip(figures["ttft_s"], stolen, strict=True))
    assert "net of the time the hypervisor took from the CPUs" in run.stdout
    assert "ttft last 50 / turns 5-25:" in run.stdout and "p95/p50" in run.stdout


def test_bench_startup_times_the_first_frame_and_the_model_with_and_without_a_cache(
    tmp_path: Path, model_path: Path
) -> None:
    out = tmp_path / "startup.json"
    run = bench("startup", "--rounds", "1", "--json", str(out))
    figures = json.loads(out.read_text())
    for case in ("cached", "uncached"):
        ((first_frame, ready),) = figures["rounds"][case]
        assert 0 < first_frame < ready, case  # the first frame comes before the model is ready
    # Without a cache the model is joined from its chunks before it loads: ready later, same first frame.
    assert figures["uncached_ready_s"] > figures["cached_ready_s"]
    assert figures["first_frame_ratio"] == figures["cached_first_frame_s"] / figures["baseline_first_frame_s"]
    assert re.fullmatch(r"first frame / bare Textual app: \d+\.\d\d \(medians\)", run.stdout.strip().splitlines()[-1])


def test_bench_tree_opens_the_browser_on_a_big_story() -> None:
    run = bench("tree", "--rounds", "1")
    assert "story tree: 200 lines in play, 240 in all (40 variants)" in run.stdout
    assert re.search(r"opening the browser: \d+ ms median of 1 \(target < 300 ms\)", run.stdout)
    assert re.search(r"an empty tree screen, the same way: \d+ ms; ratio \d+\.\d\d", run.stdout)


def test_steering_brings_the_note_and_the_players_lore_in_as_the_game_does() -> None:
    from simularity_tui.bench.script import PLAYER_LINES, player_text
    from simularity_tui.bench.steering import AUTHORS_NOTE, Steering, first_line_in_view

    session = FakeSession(n_ctx=2048)
    steering = Steering(lambda text: len(session.tokenize(text)), 2048, authors_note=True, lore=20)
    assert len(steering.pack.lore) == 20 and all(lid.startswith("bench-") for lid in steering.pack.lore)
    texts = []
    for turn in range(24):
        texts.append(steering.before(PLAYER_LINES[turn % len(PLAYER_LINES)], 0))
        steering.after("Mira says nothing.")
    # The note: due once its last copy is four lines back, two lines a turn.
    assert [turn for turn, text in enumerate(texts) if AUTHORS_NOTE in text] == list(range(0, 24, 2))
    # Lore: an entry comes in when its key is said, and not again while the window holds its note.
    assert "[note: Pattern: " in texts[1] and "[note: Pattern: " not in "".join(texts[2:])
    # Once the window has shed the lines that held it, the note comes in again.
    again = steering.before(PLAYER_LINES[1], len(steering.lines))
    assert "[note: Pattern: " in again and AUTHORS_NOTE in again
    line = "Ash: What is that pattern the lamp keeps making?\nMira:"
    assert player_text(1, texts[1]).endswith(line) and player_text(1) == line
    # The window, from the turns' tokens: nothing shed, one turn and a bit shed.
    turns = [[1] * 10, [2] * 10, [3] * 10]
    assert first_line_in_view(turns, 5, 5 + 30) == first_line_in_view(turns, 5, 5 + 29) == 0
    assert first_line_in_view(turns, 5, 5 + 20) == 2 and first_line_in_view(turns, 5, 5 + 15) == 4
