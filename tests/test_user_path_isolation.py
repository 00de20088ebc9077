"""Our own work never freezes users (issue 11, acceptance 2). `scripts/bench_hostile` runs normal clients
through a real `shadow serve`, alone and then while hostile clients (another process) pull 10 MB answers,
send 6 MB bodies, read one-character streams and poll the gate over 30,000 stored pairs. Before the serving
process was split from the capture worker, the same load took normal requests from p99 ≈ 50 ms to p99 5-7 s
and a maximum of 22-24 s. The bounds here are generous (this machine's two cores are shared by all six
processes); the benchmark's JSON reports the strict ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench_hostile"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hostile_clients_do_not_freeze_normal_requests():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "4", "--concurrency", "6"],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    quiet, hostile, done = report["quiet"], report["hostile"], report["hostile_clients_completed"]
    assert quiet["errors"] == 0 and hostile["errors"] == 0
    # The hostile load really ran: every kind of hostile request completed at least once.
    assert all(done[kind] >= 1 for kind in ("big_answers", "big_bodies", "trickles", "gate_polls")), done
    assert hostile["p99_ms"] <= 2.5 * quiet["p99_ms"] + 150, report
    assert hostile["max_ms"] <= 2.5 * hostile["p99_ms"] + 500, report
