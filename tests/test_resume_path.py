"""Resuming takes the faster path (engine/resume_path.py): restoring the KV state file where
reading it is faster than re-evaluating its window (a CPU), re-evaluating where prefill is faster (a
GPU with a bigger model); restoring when the prefill speed is not known. The arithmetic on its
own, then on the real model: what this machine picks, the re-evaluating side forced through
`open_game` (the game resumes as it would with no state file), and the short prefill that measures
an unknown speed."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.engine.resume_path import (
    DEFAULT_RESTORE_BYTES_PER_S,
    MIN_MEASURED_TOKENS,
    PROBE_TOKENS,
    PROBE_WORTH_S,
    choose_resume,
    prefill_rate,
    probe_plan,
)
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, open_game
from simularity_tui.story.saves import kv_path, save_path
from tests.test_kv_state import next_turn, played_game

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

MIB = 2**20

# -- the arithmetic -------------------------------------------------------------------------------


def test_a_cpu_restores_reading_the_file_is_far_faster() -> None:
    # The embedded model on 2 CPU cores (README, bench resume): 13.1 MiB, 1,884 tokens.
    choice = choose_resume(13_691_235, 1884, restore_bytes_per_s=340e6, prefill_tokens_per_s=550.0)
    assert choice.path == "restore"
    assert choice.restore_s == pytest.approx(13_691_235 / 340e6)
    assert choice.reevaluate_s == pytest.approx(1884 / 550)
    assert choice.reevaluate_s > 10 * choice.restore_s
    assert choice.describe().startswith("restore (restoring 13.1 MiB ~40 ms at 340 MB/s; re-evaluating 1,884 tokens")


def test_a_gpu_re_evaluates_where_prefill_is_faster_than_reading_the_file() -> None:
    # Issue 16's H200 figures: a 152.8 MiB file read in 532 ms, the window re-evaluated in 85 ms.
    state = int(152.8 * MIB)
    choice = choose_resume(state, 1884, restore_bytes_per_s=state / 0.532, prefill_tokens_per_s=1884 / 0.085)
    assert choice.path == "re-evaluate"
    assert choice.restore_s == pytest.approx(0.532)
    assert choice.reevaluate_s == pytest.approx(0.085)
    assert "re-evaluating 1,884 tokens ~85 ms at 22,165 tokens/s" in choice.describe()


def test_with_no_prefill_speed_known_the_file_is_restored() -> None:
    for unknown in (None, 0.0, -5.0):
        choice = choose_resume(int(152.8 * MIB), 1884, restore_bytes_per_s=None, prefill_tokens_per_s=unknown)
        assert choice.path == "restore" and choice.reevaluate_s is None and choice.prefill_tokens_per_s is None
        assert choice.restore_bytes_per_s == DEFAULT_RESTORE_BYTES_PER_S  # no restore measured: the default
        assert "prefill speed not measured yet" in choice.describe()


def test_a_kv_that_holds_the_window_already_is_not_restored_over() -> None:
    choice = choose_resume(13_691_235, 0, restore_bytes_per_s=None, prefill_tokens_per_s=None)
    assert choice.path == "re-evaluate" and choice.reevaluate_s == 0.0


def test_the_break_even_speed_is_where_the_choice_turns() -> None:
    slow = choose_resume(50 * MIB, 2000, restore_bytes_per_s=250e6, prefill_tokens_per_s=100.0)
    even = slow.break_even_tokens_per_s
    assert even == pytest.approx(2000 / (50 * MIB / 250e6))
    assert choose_resume(50 * MIB, 2000, restore_bytes_per_s=250e6, prefill_tokens_per_s=0.99 * even).path == "restore"
    assert (
        choose_resume(50 * MIB, 2000, restore_bytes_per_s=250e6, prefill_tokens_per_s=1.01 * even).path == "re-evaluate"
    )


def test_a_probe_is_planned_only_where_a_restore_is_long_and_the_speed_unknown() -> None:
    long_restore = choose_resume(int(152.8 * MIB), 1884, restore_bytes_per_s=None, prefill_tokens_per_s=None)
    assert long_restore.restore_s >= PROBE_WORTH_S
    count, within_s = probe_plan(long_restore) or (0, 0.0)
    # As long as PROBE_TOKENS may take at the break-even speed: slower, and restoring wins anyway.
    assert count == PROBE_TOKENS and within_s == pytest.approx(long_restore.restore_s * PROBE_TOKENS / 1884)
    known = choose_resume(int(152.8 * MIB), 1884, restore_bytes_per_s=None, prefill_tokens_per_s=500.0)
    short = choose_resume(13_691_235, 1884, restore_bytes_per_s=None, prefill_tokens_per_s=None)
    few = choose_resume(int(152.8 * MIB), MIN_MEASURED_TOKENS - 1, restore_bytes_per_s=None, prefill_tokens_per_s=None)
    assert probe_plan(known) is None and probe_plan(short) is None and probe_plan(few) is None
    assert probe_plan(choose_resume(int(152.8 * MIB), 100, restore_bytes_per_s=None, prefill_tokens_per_s=None)) == (
        100,
        pytest.approx(152.8 * MIB / DEFAULT_RESTORE_BYTES_PER_S),
    )


def test_only_long_enough_prefills_measure_a_speed() -> None:
    assert prefill_rate(MIN_MEASURED_TOKENS - 1, 0.01) is None
    assert prefill_rate(512, 0.0) is None
    assert prefill_rate(512, 0.25) == 2048.0


# -- on the real model ----------------------------------------------------------------------------


@pytest.fixture
def lighthouse(tmp_path: Path) -> LoadedPack:
    return load_pack(Path(shutil.copytree(bundled_packs_dir() / "lighthouse", tmp_path / "lighthouse")))


async def test_this_machine_restores(session: LlamaSession, tmp_path: Path) -> None:
    await played_game(session)
    path = tmp_path / "save.kv"
    await session.save_state(path)
    await session.reset()
    assert (await session.restore_state(path)).tokens > 0  # a restore measured on this machine
    held = len(session.kv_tokens)
    await session.reset()
    choice = await session.resume_choice(path)
    assert choice is not None and choice.path == "restore", choice
    assert choice.tokens == held and choice.state_bytes == path.stat().st_size
    assert choice.restore_bytes_per_s == session.restore_bytes_per_s
    assert choice.prefill_tokens_per_s == session.prefill_tokens_per_s is not None  # measured by the game's turns
    assert choice.reevaluate_s is not None and choice.reevaluate_s > choice.restore_s
    assert session.kv_tokens == ()  # weighing touched nothing
    await session.restore_state(path)
    again = await session.resume_choice(path)  # the KV holds the window: nothing to restore over it
    assert again is not None and again.path == "re-evaluate" and again.tokens == 0


async def test_a_game_resumes_by_re_evaluating_where_prefill_is_faster(
    session: LlamaSession, lighthouse: LoadedPack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await session.reset()
    path = save_path("lighthouse", "fast-prefill")
    saved = await open_game(session, lighthouse, path, sampling=SamplingParams(seed=7), budgets=Budgets(line=16))
    for line in ("Good evening.", "Is the lamp lit?"):
        await saved.game.say(line).finish()
    await saved.write_kv()
    state, save = kv_path(path), path.read_bytes()
    held = len(session.kv_tokens)

    async def resume_and_go_on() -> tuple[list[str], tuple[int, ...], str, int]:
        path.write_bytes(save)  # each resume goes on from the same save (its turn is saved)
        await session.reset()  # as a new process would start
        resumed = await open_game(session, lighthouse, path, sampling=SamplingParams(seed=7), budgets=Budgets(line=16))
        kv_after_open = session.kv_tokens
        turn = await resumed.game.say("And then?").finish()
        return resumed.warnings, kv_after_open, resumed.game.lines[-1].text, turn.evaluated_tokens

    # Where prefill is faster than reading the file, the file is left alone: the KV stays empty
    # and the first turn reads the window, exactly as a resume with no state file does.
    monkeypatch.setattr(session, "prefill_tokens_per_s", 1e12)
    with caplog.at_level(logging.INFO, logger="simularity"):
        warnings, kv_after_open, text, evaluated = await resume_and_go_on()
    assert warnings == [] and kv_after_open == ()
    assert state.exists()  # kept for a machine where restoring is faster
    said = [record.getMessage() for record in caplog.records if "resuming" in record.getMessage()]
    assert said and said[-1].startswith(f"resuming {state.name}: re-evaluate (restoring ")
    assert "re-evaluating " in said[-1] and " tokens/s)" in said[-1]
    assert evaluated > held * 0.9

    moved = state.rename(state.with_name("elsewhere.kv"))
    monkeypatch.setattr(session, "prefill_tokens_per_s", None)
    assert await resume_and_go_on() == ([], (), text, evaluated)  # no state file: the same story
    moved.rename(state)

    # Where it is slower, the file is restored and the first turn reads only what is new.
    monkeypatch.setattr(session, "prefill_tokens_per_s", 1.0)
    warnings, kv_after_open, _text, evaluated = await resume_and_go_on()
    assert warnings == [] and len(kv_after_open) == held
    assert evaluated < held * 0.2


async def test_an_unknown_prefill_speed_is_measured_once_where_a_restore_would_be_long(
    session: LlamaSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await played_game(session)
    path = tmp_path / "save.kv"
    size = await session.save_state(path)
    window = list(session.kv_tokens)
    await session.reset()
    monkeypatch.setattr(session, "prefill_tokens_per_s", None)
    # A disk this slow makes restoring take minutes: a short prefill measures the speed first.
    monkeypatch.setattr(session, "restore_bytes_per_s", size / 120.0)
    choice = await session.resume_choice(path)
    assert session.prefill_tokens_per_s is not None  # measured, and kept for the next time
    assert choice is not None and choice.path == "re-evaluate" and choice.prefill_tokens_per_s is not None
    # The probe's tokens stay in the KV: the first turn reads only the rest of the window.
    assert session.kv_tokens == tuple(window[:PROBE_TOKENS]) and choice.tokens == len(window) - PROBE_TOKENS
    turn = await next_turn(game)
    assert len(window) - PROBE_TOKENS < turn.evaluated_tokens < len(window)

    # Where a restore is just long enough to be worth a probe, the probe may take a small share of
    # it: the embedded model on a CPU is far too slow for that, and the probe is cut off.
    await session.reset()
    monkeypatch.setattr(session, "prefill_tokens_per_s", None)
    monkeypatch.setattr(session, "restore_bytes_per_s", size / (1.01 * PROBE_WORTH_S))
    started = time.perf_counter()
    choice = await session.resume_choice(path)
    assert choice is not None and choice.path == "restore" and session.prefill_tokens_per_s is None
    assert time.perf_counter() - started < PROBE_WORTH_S + 1.0  # cut off (the bound is loose: a busy machine)
