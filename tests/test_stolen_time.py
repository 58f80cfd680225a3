"""The hypervisor's time, read as Linux writes it (proc(5): /proc/stat, steal in clock ticks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simularity_tui.bench import stolen_time
from simularity_tui.bench.stolen_time import stolen_between, stolen_per_cpu

TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(steal: tuple[int, ...]) -> str:
    """A /proc/stat with one line per CPU and the rest of its lines, as Linux 6 writes them."""
    cpus = [f"cpu{n} 4370322 25 223301 2849291 4189 0 2353 {ticks} 0 0" for n, ticks in enumerate(steal)]
    return "\n".join([f"cpu  9244636 1348 499172 5103879 17153 0 7565 {sum(steal)} 0 0", *cpus,
                      "intr 123 0 9", "ctxt 98765", "btime 1764547200", "procs_running 2"]) + "\n"  # fmt: skip


def test_each_cpus_stolen_seconds_are_read_and_the_whole_machine_line_is_not_one_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    stat.write_text(proc_stat((36400, 34808)))
    monkeypatch.setattr(stolen_time, "_PROC_STAT", stat)
    assert stolen_per_cpu() == (36400 / TICKS, 34808 / TICKS)


def test_without_a_steal_clock_nothing_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stolen_time, "_PROC_STAT", tmp_path / "absent")
    assert stolen_per_cpu() == ()
    assert stolen_between((), ()) == 0.0


def test_a_wait_lost_what_the_most_robbed_cpu_lost_not_the_sum() -> None:
    # Two CPUs stolen at once stall a decode once: counting the sum would flatter the engine.
    assert stolen_between((1.0, 2.0), (1.05, 2.12)) == pytest.approx(0.12)
    assert stolen_between((1.0, 2.0), (1.0, 2.0)) == 0.0
    assert stolen_between((1.0, 2.0), (1.0, 2.0, 3.0)) == 0.0  # a CPU came online: nothing sure


def test_this_machine_says_how_much_was_stolen_if_it_is_linux() -> None:
    readings = stolen_per_cpu()
    if Path("/proc/stat").exists():
        assert readings and all(seconds >= 0 for seconds in readings)  # a line per online CPU
        assert stolen_between(readings, stolen_per_cpu()) >= 0
    else:
        assert readings == ()
