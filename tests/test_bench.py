"""`simularity bench decode` runs both sides and ends with the ratio line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_bench_decode_reports_a_ratio(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "decode.json"
    run = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "bench", "decode", "--tokens", "24", "--rounds", "2",
         "--threads", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio: \d+\.\d\d", last)
    figures = json.loads(out.read_text())
    assert len(figures["rounds"]) == 4 and {r["side"] for r in figures["rounds"]} == {"session", "baseline"}
    assert figures["ratio"] == figures["session_tokens_per_second"] / figures["baseline_tokens_per_second"]
    assert f"{figures['ratio']:.2f}" == last.split()[-1]
