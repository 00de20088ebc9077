"""The judge: verdict rules, nodata, all-error candidates, windows, segments, policy files."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadow.gate import evaluate_gate, load_policy
from shadow.gate.command import GateInputError, add_arguments, run
from shadow.gate.policy import PolicyError
from tests.gate_simulation import build_pool, simulate_records

CHECK_KEYS = {
    "name",
    "metric",
    "verdict",
    "critical",
    "candidate",
    "baseline",
    "noise",
    "effect_size",
    "p_value",
    "threshold",
    "reason",
}


@pytest.fixture(scope="module")
def pool():
    return build_pool(24)


def test_identical_candidate_passes_with_every_check_reported(pool) -> None:
    result = evaluate_gate(simulate_records("identical", 1200, 3, pool=pool))
    assert result["verdict"] == "pass", result["reason"]
    assert result["n_pairs"] == 1200 and result["score"] == 100.0
    assert {c["name"] for c in result["checks"]} >= {"semantic_divergence", "loop_rate", "latency_p95"}
    for check in result["checks"]:
        assert set(check) >= CHECK_KEYS
        assert check["verdict"] == "pass" and check["reason"]
    json.dumps(result, allow_nan=False)  # strict JSON


def test_too_few_pairs_is_inconclusive_never_a_silent_pass(pool) -> None:
    result = evaluate_gate(simulate_records("identical", 30, 1, pool=pool))
    assert result["verdict"] == "inconclusive"
    assert any(c["verdict"] == "nodata" for c in result["checks"])
    assert "no verdict yet" in result["reason"]
    assert evaluate_gate([])["verdict"] == "inconclusive"


def test_all_error_candidate_fails_with_the_reason(pool) -> None:
    result = evaluate_gate(simulate_records("all_error", 60, 1, pool=pool))
    assert result["verdict"] == "fail"
    error_check = next(c for c in result["checks"] if c["name"] == "error_rate")
    assert error_check["verdict"] == "fail"
    assert "100.0 %" in error_check["reason"] and "503" in error_check["reason"]
    assert "error_rate" in result["reason"]


def test_loop_reason_reads_like_a_sentence(pool) -> None:
    result = evaluate_gate(simulate_records("loop_3pct", 2000, 2, pool=pool))
    loop = next(c for c in result["checks"] if c["name"] == "loop_rate")
    assert loop["verdict"] == "fail"
    assert loop["reason"].startswith("Candidate loops in ") and "for the primary and its " in loop["reason"]
    assert result["verdict"] == "fail"


def test_significant_but_small_difference_passes() -> None:
    # Kayenta's rule: a fail needs significance *and* an effect above the tolerance.
    records = []
    for i in range(4000):
        records.append(
            {
                "id": str(i),
                "experiment": "e",
                "candidate_status": 200,
                "baseline_status": 200,
                "candidate_error": None,
                "baseline_error": None,
                "loop": {"baseline": {"flag": i % 100 == 0}, "candidate": {"flag": i % 50 == 0}},
            }
        )
    policy = load_policy(None)
    loop = next(c for c in evaluate_gate(records, policy)["checks"] if c["name"] == "loop_rate")
    assert loop["p_value"] < policy.alpha and loop["verdict"] == "pass"
    assert "within the tolerance" in loop["reason"]


def test_window_segment_and_experiment_filters(pool) -> None:
    records = simulate_records("identical", 400, 5, pool=pool)
    latest = datetime.fromisoformat(records[-1]["created_at"].replace("Z", "+00:00"))
    assert evaluate_gate(records, since=timedelta(seconds=99), now=latest)["n_pairs"] == 100
    assert evaluate_gate(records, last=50)["n_pairs"] == 50
    chinese = evaluate_gate(records, segment={"lang": "zh"})["n_pairs"]
    english = evaluate_gate(records, segment={"lang": "en"})["n_pairs"]
    assert chinese + english == 400 and 120 < chinese < 280
    records[0]["segment"] = {"lang": "en", "region": "eu"}
    assert evaluate_gate(records, segment={"region": "eu"})["n_pairs"] == 1
    assert evaluate_gate(records, experiment="other")["n_pairs"] == 0


def test_policy_file_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text("confidence = 0.99\nmin_pairs = 10\n[checks.loop_rate]\ncritical = false\nweight = 2\n")
    policy = load_policy(path)
    assert policy.confidence == 0.99 and policy.min_pairs == 10
    assert policy.check("loop_rate").critical is False and policy.check("loop_rate").weight == 2.0
    path.write_text("[checks.nope]\nweight = 1\n")
    with pytest.raises(PolicyError, match="unknown check 'nope'"):
        load_policy(path)
    path.write_text("confidence = 2\n")
    with pytest.raises(PolicyError, match="confidence"):
        load_policy(path)


def test_marginal_score_is_inconclusive(pool) -> None:
    # With only coherence_score (weight 1) failing beside semantic divergence (weight 3): 75 -> marginal.
    records = simulate_records("identical", 1200, 3, pool=pool)
    policy = load_policy(None).with_check("coherence_score", tolerance=-1.0)
    for record in records:  # make the candidate a little less coherent on every long Chinese answer
        coherence = record.get("coherence", {}).get("candidate")
        if coherence and coherence.get("applicable"):
            coherence["score"] -= 0.2
    result = evaluate_gate(records, policy)
    assert result["verdict"] == "inconclusive" and result["score"] == 75.0
    assert "marginal" in result["reason"]


@pytest.mark.parametrize(("scenario", "code"), [("identical", 0), ("all_error", 1)])
def test_command_exit_codes_and_json(tmp_path: Path, pool, capsys, scenario: str, code: int) -> None:
    path = tmp_path / "scores.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for record in simulate_records(scenario, 1200, 4, pool=pool):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--input", str(path), "--json"])) == code
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"verdict", "score", "n_pairs", "checks"}
    assert run(parser.parse_args(["--input", str(path), "--last", "20"])) == (
        2 if scenario == "identical" else 1
    )
    table = capsys.readouterr().out
    assert "NODATA" in table and (
        "GATE INCONCLUSIVE" in table if scenario == "identical" else "GATE FAIL" in table
    )
    with pytest.raises(GateInputError, match="check the --input path"):  # a UserError: main prints it
        run(parser.parse_args(["--input", str(tmp_path / "missing.jsonl")]))


def test_db_source_reads_the_store(tmp_path: Path, capsys) -> None:
    from shadow.cli import main

    code = main(["gate", "--db", f"sqlite:///{tmp_path}/empty.db", "--experiment", "x"])
    # An empty or unmigrated store: a clear error (3), never a crash or a pass.
    assert code == 3
    assert "shadow gate: error:" in capsys.readouterr().err
    assert not (tmp_path / "empty.db").exists()  # reading does not create an empty store


def test_datetime_now_default_window() -> None:
    now = datetime.now(UTC)
    records = [{"experiment": "e", "created_at": (now - timedelta(minutes=m)).isoformat()} for m in (1, 30)]
    assert evaluate_gate(records, since=timedelta(minutes=15))["n_pairs"] == 1


def _mirror_path_delay(records: list[dict], extra: float, seed: int) -> list[dict]:
    """The same records with the mirror path slower than the user's: the candidate's and the primary's
    reruns' timings (both called by the sidecar in the background) each 0 to `extra` times longer."""
    rng = random.Random(seed)
    for record in records:
        for side in ("candidate", "secondary"):
            if record.get(f"{side}_latency_ms") is not None and record.get(f"{side}_status") == 200:
                slower = 1.0 + rng.uniform(0, extra)
                record[f"{side}_latency_ms"] *= slower
                record[f"{side}_ttft_ms"] *= slower
    return records


def _check(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)


@pytest.mark.parametrize("check", ["latency_p95", "ttft_p95"])
def test_a_slow_mirror_path_is_not_the_candidates_latency(pool, check: str) -> None:
    # Without the reruns the path's delay reads as a slow candidate; with them it cancels out.
    records = _mirror_path_delay(simulate_records("identical", 1200, 4, pool=pool), 0.8, 0)
    passed = _check(evaluate_gate(records), check)
    assert passed["verdict"] == "pass", passed["reason"]
    assert "for the primary's reruns (" in passed["reason"]
    assert "which take the same mirror path, slower than the users'" in passed["reason"]
    no_reruns = [{**r, "secondary_latency_ms": None, "secondary_ttft_ms": None} for r in records]
    assert _check(evaluate_gate(no_reruns), check)["verdict"] == "fail"


def test_a_slow_candidate_fails_on_a_slow_mirror_path_too(pool) -> None:
    records = _mirror_path_delay(simulate_records("slow_p95_1.5x", 1200, 4, pool=pool), 0.8, 0)
    latency = _check(evaluate_gate(records), "latency_p95")
    assert latency["verdict"] == "fail", latency["reason"]
    assert "the primary's reruns" in latency["reason"]


def test_the_primary_is_the_reference_where_the_mirror_path_adds_nothing(pool) -> None:
    latency = _check(evaluate_gate(simulate_records("slow_p95_1.5x", 1200, 4, pool=pool)), "latency_p95")
    assert latency["verdict"] == "fail"
    assert "for the primary (" in latency["reason"] and "reruns" not in latency["reason"]


def test_a_pass_names_the_checks_it_could_not_judge() -> None:
    from shadow.gate.judge import decide
    from shadow.gate.policy import GatePolicy

    def check(name: str, verdict: str, required: bool = True) -> dict:
        return {"name": name, "verdict": verdict, "critical": False, "required": required, "weight": 1.0}

    judged = [check("semantic_divergence", "pass"), check("loop_rate", "pass")]
    assert decide(judged, GatePolicy())[2] == "all checks passed (score 100)."
    verdict, score, reason = decide(
        [*judged, check("coherence_break_rate", "nodata", required=False)], GatePolicy()
    )
    assert (verdict, score) == ("pass", 100.0)
    assert (
        reason
        == "every check with a verdict passed (score 100); no verdict, not required: coherence_break_rate."
    )
