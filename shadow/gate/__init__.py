"""`shadow gate`: may the candidate take more traffic? Pass, fail or inconclusive, with reasons.

The pipeline reads top-down: `policy.py` (what to check, how strictly; the quality checks' defaults are
declared by the evaluators) → `sample.py` (read the scored pairs through `shadow.core.view` and the
evaluators' declared outputs) → `checks.py` (judge each check with `stats.py`, shaped by `judging.py`) →
`judge.py` (score and verdict) → `render.py` (table), `command.py` (CLI) and `http.py` (admin API for
Argo Rollouts and Flagger).
"""

from __future__ import annotations

from shadow.gate.judge import SEQUENTIAL_METHOD, evaluate_gate
from shadow.gate.policy import CheckPolicy, GatePolicy, PolicyError, load_policy

__all__ = ["SEQUENTIAL_METHOD", "CheckPolicy", "GatePolicy", "PolicyError", "evaluate_gate", "load_policy"]
