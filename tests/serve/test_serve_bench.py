"""`benchmarks/serve_bench.py --mixed` end to end on the untrained tiny model: it starts `doodle
serve`, sends valid, bad and slow requests together and prints what it saw."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_bench.py"


def test_mixed_mode_runs_and_reports(untrained_model, tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), str(untrained_model), "--mixed", "--concurrency", "3",
                          "--seconds", "2", "--drawings", "50", "--data", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    statuses = dict(re.findall(r"(\d{3}): (\d+)", re.search(r"statuses (.*)", text).group(1)))
    assert int(statuses["200"]) > 0 and int(statuses["422"]) > 0
    assert re.search(r"5xx: 0; dropped connections: 0; reopened connections: \d+", text), text
    for kind in ("valid", "bad", "slow"):
        assert re.search(rf"{kind} +requests: +\d+ +p50 +[\d.]+ ms +p99 +[\d.]+ ms", text), text
    assert "server log: 0 lines, 0 tracebacks" in text, text


def test_cold_mode_reports_the_first_guess_of_every_kind_of_input(untrained_model, quickdraw):
    out = subprocess.run([sys.executable, str(BENCH), str(untrained_model), "--cold", "2", "--drawings", "12",
                          "--data", str(quickdraw / "raw")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"cold starts of `doodle serve .*`: 2; ready after median [\d.]+ s", out.stdout), out.stdout
    for kind in ("raw", "untimed", "simplified"):
        assert re.search(rf"^{kind} +[\d.]+ +[\d.]+ +[\d.]+$", out.stdout, re.M), out.stdout
