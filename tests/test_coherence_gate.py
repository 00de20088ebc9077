"""The coherence checks of the default gate on real text scored by the real evaluator: an identical-quality
candidate passes them, a candidate with logic breaks in 15 % of its long Chinese answers fails.

Prompts are validation passages of three domains (`tests.coherence_domains`: Chinese news and technical
text, English news). The primary, its reruns (30 % of pairs) and an identical-quality candidate all answer
with the prompt's passage after the same light edit process (each sentence dropped with probability 0.1,
as two samples of one model differ); the broken candidate splices 15 % of its long Chinese answers (the
second half from another document of the domain). Everything is scored by `shadow score`'s runner with
the default encoder and judged by the default policy.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from evaluators.runner import ScoreRunner, score_records
from shadow.core.pairs import Pair
from shadow.gate import evaluate_gate
from tests import coherence_domains
from tests.corpora import CorpusMissing

DOMAINS = ("zh-news", "zh-technical", "en-news")
PAIRS = 240
BROKEN_PAIRS = 1200  # 15 % of the long Chinese answers spliced: enough pairs for the break rate to tell
BREAK_SHARE = 0.15
COHERENCE_CHECKS = ("coherence_break_rate", "coherence_score")


def _passages() -> list[tuple[str, int, list[str]]]:
    found = []
    for name in DOMAINS:
        try:
            pools = coherence_domains.pools(name)
        except CorpusMissing as missing:
            pytest.skip(str(missing))
        found += [(name, document, sentences) for document, sentences in pools.validation[:120]]
    return found


def _sample(sentences: list[str], rng: random.Random) -> list[str]:
    kept = [sentence for sentence in sentences if rng.random() >= 0.1]
    return kept if len(kept) >= 6 else sentences


def _records(broken: bool, seed: int, pairs: int = PAIRS) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    passages = _passages()
    records = []
    for index in range(pairs):
        name, document, sentences = passages[rng.randrange(len(passages))]
        language = coherence_domains.domain(name).language
        glue = coherence_domains.joiner(language)
        candidate = _sample(sentences, rng)
        if broken and language == "zh" and rng.random() < BREAK_SHARE:
            others = [s for n, d, s in passages if n == name and d != document]
            other = others[rng.randrange(len(others))]
            candidate = candidate[: len(candidate) // 2] + other[len(other) // 2 :]
        record: dict[str, Any] = {
            "id": f"{seed}-{index:04d}",
            "experiment": "coherence-gate",
            "created_at": f"2026-01-01T{index // 3600:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z",
            "prompt": f"{name} {document}",
            "baseline": glue.join(_sample(sentences, rng)),
            "candidate": glue.join(candidate),
        }
        if rng.random() < 0.3:
            record["secondary"] = glue.join(_sample(sentences, rng))
        records.append(record)
    return records


@pytest.fixture(scope="module")
def runner() -> ScoreRunner:
    return ScoreRunner.build("coherence", device="cpu")


def _coherence_checks(records: list[dict[str, Any]], runner: ScoreRunner) -> dict[str, dict[str, Any]]:
    scored = list(score_records(((record, Pair.from_json(record)) for record in records), runner))
    checks = evaluate_gate(scored)["checks"]
    return {check["name"]: check for check in checks if check["name"] in COHERENCE_CHECKS}


@pytest.mark.parametrize("seed", [0, 1])
def test_identical_quality_candidate_passes_the_coherence_checks(runner, seed):
    checks = _coherence_checks(_records(broken=False, seed=seed), runner)
    assert set(checks) == set(COHERENCE_CHECKS)
    for name, check in checks.items():
        assert check["verdict"] == "pass", f"{name}: {check['reason']}"


def test_logic_breaks_in_15_percent_of_long_chinese_answers_fail(runner):
    checks = _coherence_checks(_records(broken=True, seed=2, pairs=BROKEN_PAIRS), runner)
    assert checks["coherence_break_rate"]["verdict"] == "fail", checks["coherence_break_rate"]["reason"]
