"""The time a hypervisor took from this machine's CPUs while a benchmark waited ("steal" in Linux's
/proc/stat): on a shared virtual machine, a vCPU descheduled by the host for 50-200 ms stalls a
decode whose threads meet at a barrier, and that wait is the host's, not the engine's. Benchmarks
report their waits both as measured and net of it, so a noisy neighbour is told apart from a slow
turn. Elsewhere (not Linux, or no steal clock) nothing is counted and the two figures are the same.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC_STAT = Path("/proc/stat")
_STEAL_FIELD = 8  # "cpuN user nice system idle iowait irq softirq steal …", in clock ticks


def stolen_per_cpu() -> tuple[float, ...]:
    """Seconds each CPU has lost to the hypervisor since boot; empty where the system does not say."""
    try:
        lines = _PROC_STAT.read_text().splitlines()
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return ()
    stolen: list[float] = []
    for line in lines:
        fields = line.split()
        if fields and fields[0].startswith("cpu") and fields[0] != "cpu" and len(fields) > _STEAL_FIELD:
            stolen.append(int(fields[_STEAL_FIELD]) / ticks_per_second)
    return tuple(stolen)


def stolen_between(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    """The time the hypervisor took between two readings, as a wait: the most any one CPU lost.

    Not the sum: two CPUs stolen at once stall a decode once. Of the two estimates this is the
    smaller, so a wait net of it flatters the engine the least."""
    if len(before) != len(after):
        return 0.0  # a CPU came or went: nothing sure to say
    return max((later - earlier for earlier, later in zip(before, after, strict=True)), default=0.0)
