"""Synthetic scored pairs for the report's tests and `scripts/bench_report`, and their gate result.

The data tell one story the report must make visible: the candidate is as good as the primary everywhere
except on long Chinese answers, where it loops, loses coherence and diverges. About one pair in ten has a
secondary (the noise floor); a few candidate calls fail.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

ZH_SENTENCES = [
    "首先需要确认数据的来源是否可靠。",
    "模型的评估应当覆盖不同的用户群体。",
    "我们可以用向量相似度衡量两个回答的差异。",
    "如果延迟过高，用户会明显感觉到卡顿。",
    "建议先在小流量上验证新模型的表现。",
    "长文本生成时更容易出现重复和跑题。",
    "请注意保护用户的隐私信息，不要记录敏感字段。",
    "这个问题可以分成三个步骤来解决。",
    "最后，把结果整理成表格方便团队阅读。",
    "缓存可以减少重复计算，但要注意失效策略。",
]
EN_SENTENCES = [
    "First, check whether the data source is reliable.",
    "An evaluation should cover every group of users.",
    "Vector similarity measures how far two answers drift apart.",
    "When latency grows, users notice the delay at once.",
    "Try the new model on a small share of traffic first.",
    "Long generations are more prone to repetition and drift.",
    "Keep personal data out of the logs.",
    "The problem splits naturally into three steps.",
    "Finally, put the results in a table the team can read.",
    "A cache saves work, but plan how entries expire.",
]
ZH_PROMPTS = ["请解释一下如何评估一个新的语言模型。", "写一份关于缓存策略的详细说明。", "总结这段会议记录。"]
EN_PROMPTS = [
    "Explain how to evaluate a new language model.",
    "Write a guide to caching.",
    "Summarise the notes.",
]
LOOP_ZH = "我们需要再次检查这个结果。"
LOOP_EN = "We need to check this result again. "


def synthetic_records(n: int, *, seed: int = 7, experiment: str = "exp-zh-long") -> list[dict[str, Any]]:
    """`n` scored pairs (JSONL objects as `shadow score` writes them)."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return [_record(i, rng, start, experiment) for i in range(n)]


def _record(i: int, rng: random.Random, start: datetime, experiment: str) -> dict[str, Any]:
    zh = rng.random() < 0.5
    pool, prompts = (ZH_SENTENCES, ZH_PROMPTS) if zh else (EN_SENTENCES, EN_PROMPTS)
    joiner = "" if zh else " "
    long_answer = rng.random() < 0.3
    n_sentences = rng.randint(40, 70) if long_answer else rng.randint(2, 8)
    baseline_sentences = [rng.choice(pool) for _ in range(n_sentences)]
    baseline = joiner.join(baseline_sentences)
    candidate_sentences = [s if rng.random() < 0.85 else rng.choice(pool) for s in baseline_sentences]
    broken = zh and long_answer
    loop_span = None
    breaks: list[int] = []
    if broken and rng.random() < 0.4:
        before = joiner.join(candidate_sentences[: n_sentences // 2])
        repeated = (LOOP_ZH if zh else LOOP_EN) * rng.randint(6, 12)
        candidate = before + repeated
        loop_span = [len(before), len(candidate)]
        candidate_sentences = candidate_sentences[: n_sentences // 2]
    else:
        candidate = joiner.join(candidate_sentences)
    if broken:
        breaks = sorted(rng.sample(range(1, max(2, len(candidate_sentences))), k=min(3, n_sentences // 10)))
    prompt = rng.choice(prompts) * (rng.randint(20, 40) if rng.random() < 0.2 else 1)
    failed = rng.random() < 0.02
    has_secondary = rng.random() < 0.1
    stream = rng.random() < 0.6
    base_latency = rng.lognormvariate(math.log(900 + 20 * n_sentences), 0.35)
    record: dict[str, Any] = {
        "id": f"01JSYN{i:020d}",
        "experiment": experiment,
        "created_at": (start + timedelta(seconds=i * 13)).isoformat().replace("+00:00", "Z"),
        "route": "chat",
        "stream": stream,
        "request": {"model": "primary-large", "messages": [{"role": "user", "content": prompt}]},
        "prompt": prompt,
        "user_bucket": rng.randrange(10000),
        "segment": {
            "tier": rng.choice(["free", "pro", "enterprise"]),
            "region": "cn" if zh else rng.choice(["us", "eu"]),
        },
        "user_cancelled": rng.random() < 0.01,
        "baseline": baseline,
        **_side("baseline", "primary-large", base_latency, stream, rng),
        "candidate": None if failed else candidate,
        **_side("candidate", "candidate-small", base_latency * rng.uniform(0.9, 1.3), stream, rng, failed),
    }
    divergence = _clip(rng.gauss(0.32 if broken else 0.09, 0.07))
    if not failed:
        ratio = math.log(max(1, len(candidate)) / max(1, len(baseline)))
        record["semantic"] = _semantic(divergence)
        record["length"] = {"baseline_units": n_sentences * 12, "candidate_units": None, "log_ratio": ratio}
        record["length"]["candidate_units"] = round(n_sentences * 12 * math.exp(ratio))
    else:
        record["semantic"] = None
        record["length"] = None
    record["loop"] = {
        "baseline": {"score": _clip(rng.gauss(0.05, 0.03)), "flag": rng.random() < 0.01, "span": None},
        "candidate": (
            {
                "score": 0.9 if loop_span else _clip(rng.gauss(0.05, 0.03)),
                "flag": bool(loop_span),
                "span": loop_span,
            }
            if not failed
            else {"score": None, "flag": None, "span": None}
        ),
    }
    applicable = n_sentences >= 3
    record["coherence"] = {
        "baseline": {
            "applicable": applicable,
            "score": _clip(rng.gauss(0.85, 0.05)) if applicable else None,
            "breaks": [],
        },
        "candidate": {
            "applicable": applicable and not failed,
            "score": _clip(rng.gauss(0.6 if broken else 0.84, 0.06)) if applicable and not failed else None,
            "breaks": breaks if not failed else [],
        },
    }
    if has_secondary:
        record["secondary"] = joiner.join(
            s if rng.random() < 0.92 else rng.choice(pool) for s in baseline_sentences
        )
        record.update(_side("secondary", "primary-large", base_latency * rng.uniform(0.9, 1.1), stream, rng))
        record["noise"] = {
            "semantic": _semantic(_clip(rng.gauss(0.08, 0.05))),
            "length": {
                "baseline_units": n_sentences * 12,
                "candidate_units": n_sentences * 12,
                "log_ratio": rng.gauss(0, 0.05),
            },
        }
        record["loop"]["secondary"] = {"score": _clip(rng.gauss(0.05, 0.03)), "flag": False, "span": None}
        record["coherence"]["secondary"] = {
            "applicable": applicable,
            "score": _clip(rng.gauss(0.85, 0.05)) if applicable else None,
            "breaks": [],
        }
    return record


def _side(
    side: str, model: str, latency: float, stream: bool, rng: random.Random, failed: bool = False
) -> dict:
    return {
        f"{side}_status": 500 if failed else 200,
        f"{side}_latency_ms": round(latency, 1),
        f"{side}_ttft_ms": round(latency * rng.uniform(0.1, 0.3), 1) if stream and not failed else None,
        f"{side}_finish_reason": None if failed else ("length" if rng.random() < 0.02 else "stop"),
        f"{side}_usage": None if failed else {"prompt_tokens": 40, "completion_tokens": int(latency / 10)},
        f"{side}_error": "upstream returned 500" if failed else None,
        f"{side}_model": model,
    }


def _semantic(divergence: float) -> dict[str, float]:
    return {
        "similarity": 1 - divergence,
        "divergence": divergence,
        "precision": 1 - divergence / 2,
        "recall": 1 - divergence / 2,
    }


def _clip(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


def gate_for(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The gate's result for `records` under the default policy."""
    from shadow.gate import evaluate_gate

    return evaluate_gate(records)


def test_synthetic_records_tell_the_long_chinese_story() -> None:
    records = synthetic_records(400)
    zh_long = [r for r in records if r["segment"]["region"] == "cn" and len(r["baseline"]) > 300]
    others = [r for r in records if r not in zh_long]
    assert zh_long and others
    assert any(r["loop"]["candidate"]["flag"] for r in zh_long)
    assert not any(r["loop"]["candidate"]["flag"] for r in others)
    assert sum(1 for r in records if r.get("noise")) > 20
    assert any(r["candidate"] is None for r in records)
