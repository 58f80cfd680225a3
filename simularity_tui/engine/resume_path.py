"""Resuming a saved game: restore its KV state file, or re-evaluate the window? The faster one.

Restoring reads the state file (checked end to end before llama.cpp sees it) and copies it into
the KV: its cost grows with the file's size. Re-evaluating reads the window's tokens again: its
cost grows with their number and the machine's prefill speed. On a CPU restoring wins by far (the
embedded model: 13 MiB read in ~40 ms against ~2-4 s to re-evaluate 1,884 tokens); on a GPU with a
bigger model it can lose (Gemma 3 4B shape on an H200: 153 MiB read in 532 ms against 85 ms to
re-evaluate). Both are estimated and the smaller taken:

    restore      = state file bytes / restore throughput (bytes/s)
    re-evaluate  = tokens the KV lacks / prefill speed (tokens/s)

The restore throughput is the session's fastest restore where it made one, else
DEFAULT_RESTORE_BYTES_PER_S (measured: 300-370 MB/s on a 2-core CPU and on the H200's host; the
time goes to checking the file more than to the disk). The prefill speed is the session's best
measured prefill of at least MIN_MEASURED_TOKENS tokens. With no prefill speed known the file is
restored (a state file exists to be restored), unless restoring is estimated to cost at least
PROBE_WORTH_S: then a short prefill of the window's first tokens is timed first (`probe_plan`),
given only as long as it may take for re-evaluating to win, so that a machine where restoring is
right loses at most a fraction of the restore to the probe, and one where it is not keeps the
probe's tokens in the KV for the first turn.

Plain arithmetic, no llama.cpp: tests/test_resume_path.py checks both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResumePath = Literal["restore", "re-evaluate"]

DEFAULT_RESTORE_BYTES_PER_S = 300e6
MIN_MEASURED_TOKENS = 32  # shorter prefills say more about per-call overhead than about speed
PROBE_TOKENS = 128  # a probe's length: big enough for a GPU's batch speed to show
PROBE_WORTH_S = 0.1  # a restore estimated shorter than this is not worth a probe


@dataclass(frozen=True)
class ResumeChoice:
    path: ResumePath
    state_bytes: int
    tokens: int  # tokens re-evaluating would read (the window's, less what the KV holds already)
    restore_bytes_per_s: float
    prefill_tokens_per_s: float | None  # None: not measured
    restore_s: float
    reevaluate_s: float | None  # None: prefill speed unknown

    @property
    def break_even_tokens_per_s(self) -> float:
        """The prefill speed above which re-evaluating would be the faster path."""
        return self.tokens / self.restore_s if self.restore_s > 0 else float("inf")

    def describe(self) -> str:
        restore = f"restoring {self.state_bytes / 2**20:,.1f} MiB ~{self.restore_s * 1000:,.0f} ms"
        restore += f" at {self.restore_bytes_per_s / 1e6:,.0f} MB/s"
        if self.reevaluate_s is None or self.prefill_tokens_per_s is None:
            reevaluate = f"re-evaluating {self.tokens:,} tokens: prefill speed not measured yet"
        else:
            reevaluate = f"re-evaluating {self.tokens:,} tokens ~{self.reevaluate_s * 1000:,.0f} ms"
            reevaluate += f" at {self.prefill_tokens_per_s:,.0f} tokens/s"
        return f"{self.path} ({restore}; {reevaluate})"


def choose_resume(
    state_bytes: int, tokens: int, *, restore_bytes_per_s: float | None, prefill_tokens_per_s: float | None
) -> ResumeChoice:
    """Restore the state file or re-evaluate `tokens`, whichever is estimated faster; restore when
    the prefill speed is not known (unless there is nothing to re-evaluate)."""
    restore_rate = (
        restore_bytes_per_s if restore_bytes_per_s and restore_bytes_per_s > 0 else DEFAULT_RESTORE_BYTES_PER_S
    )
    prefill_rate = prefill_tokens_per_s if prefill_tokens_per_s and prefill_tokens_per_s > 0 else None
    tokens = max(0, tokens)
    restore_s = max(0, state_bytes) / restore_rate
    if tokens == 0:
        reevaluate_s: float | None = 0.0  # the KV holds the window already: nothing to read at any speed
    else:
        reevaluate_s = tokens / prefill_rate if prefill_rate is not None else None
    path: ResumePath = "re-evaluate" if reevaluate_s is not None and reevaluate_s < restore_s else "restore"
    return ResumeChoice(path, state_bytes, tokens, restore_rate, prefill_rate, restore_s, reevaluate_s)


def probe_plan(choice: ResumeChoice) -> tuple[int, float] | None:
    """When the prefill speed is not known and worth measuring: (tokens to prefill, seconds they
    may take at most: at any slower speed re-evaluating the whole window loses). Else None."""
    if choice.prefill_tokens_per_s is not None or choice.tokens == 0 or choice.restore_s < PROBE_WORTH_S:
        return None
    count = min(PROBE_TOKENS, choice.tokens)
    if count < MIN_MEASURED_TOKENS:  # too short to time: restore
        return None
    return count, choice.restore_s * count / choice.tokens


def prefill_rate(tokens: int, seconds: float) -> float | None:
    """A measured prefill's speed, if it says something (long enough, timed)."""
    if tokens < MIN_MEASURED_TOKENS or seconds <= 0:
        return None
    return tokens / seconds
