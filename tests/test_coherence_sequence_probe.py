"""scripts/coherence_sequence_probe finds splice and order information where embeddings carry it, and only
there: its negative result on English dialogue means something only if it can learn a positive one.

Synthetic embeddings stand in for the encoder's: each document has a topic direction (what a splice
changes), and sentences drift along a shared direction as a passage goes on (what a shuffle breaks).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.coherence_domains import splices_and_shuffles

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "coherence_sequence_probe"
WIDTH, SENTENCES = 24, 8


@pytest.fixture(scope="module")
def probe():
    loader = importlib.machinery.SourceFileLoader("coherence_sequence_probe", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _corpus(topic: float, drift: float, seed: int) -> tuple[torch.Tensor, dict, list[dict]]:
    """80 documents of three 8-sentence passages; the first 50 documents to fitting, the rest validated."""
    rng = np.random.default_rng(seed)
    along = rng.normal(size=WIDTH)
    vectors, names, passages = [], {}, []
    for document in range(80):
        direction = rng.normal(size=WIDTH)
        for part in range(3):
            passage = []
            for position in range(SENTENCES):
                vector = (
                    topic * direction + drift * (position - SENTENCES / 2) * along + rng.normal(size=WIDTH)
                )
                names[f"d{document}p{part}s{position}"] = len(vectors)
                vectors.append(vector / np.linalg.norm(vector))
                passage.append(f"d{document}p{part}s{position}")
            passages.append((document, passage))
    embeddings = torch.tensor(np.asarray(vectors), dtype=torch.float32)
    pools = {"synthetic": [(d, [names[s] for s in p]) for d, p in passages if d < 50]}
    items = splices_and_shuffles([(d, p) for d, p in passages if d >= 50], "en", 0, limit=90)
    return embeddings, pools, [{**item, "rows": [names[s] for s in item["sentences"]]} for item in items]


def _run(probe, topic: float, drift: float) -> dict[str, float]:
    embeddings, pools, items = _corpus(topic, drift, seed=3)
    model = probe.train(embeddings, pools, {"synthetic": 1}, steps=300, batch=32, dim=32, layers=1, lr=3e-3)
    return probe.evaluate(model, embeddings, items)


def test_it_learns_splices_and_order_where_the_embeddings_carry_them(probe) -> None:
    result = _run(probe, topic=2.0, drift=0.4)
    assert result["texts"] == 270
    assert result["splice_auroc"] > 0.9, result
    assert result["splice_argmax_within_one"] > 0.8, result
    assert result["shuffle_auroc"] > 0.8, result


def test_it_finds_nothing_where_they_carry_nothing(probe) -> None:
    result = _run(probe, topic=0.0, drift=0.0)
    assert 0.35 < result["splice_auroc"] < 0.65, result
    assert 0.35 < result["shuffle_auroc"] < 0.65, result


def test_a_training_splice_never_cuts_at_the_ends_and_comes_from_another_document(probe) -> None:
    import random

    pool = [(d, list(range(10 * d, 10 * d + 8))) for d in range(6)]
    rng = random.Random(0)
    kinds = set()
    for _ in range(300):
        rows, kind, cut = probe.draw(pool, 2, rng)
        kinds.add(kind)
        if kind == 1:
            assert 2 <= cut <= len(pool[0][1]) - 2
            head, tail = {r // 10 for r in rows[:cut]}, {r // 10 for r in rows[cut:]}
            assert len(head) == len(tail) == 1 and abs(head.pop() - tail.pop()) >= 2
        elif kind == 2:
            assert len({r // 10 for r in rows}) == 1 and len(rows) == 8 and rows != sorted(rows)
        else:
            assert cut == 0 and rows == sorted(rows)
    assert kinds == {0, 1, 2}
