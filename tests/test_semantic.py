"""Semantic divergence on hand-made Chinese and English answers, with the default encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from evaluators.base import ScoringContext, TextPair
from evaluators.semantic import SemanticEvaluator, estimate_tokens, unit_spans

GC_ANSWER = [
    "Python's garbage collector uses reference counting as its primary mechanism. Every object keeps a "
    "count of references to it, and when that count drops to zero the memory is released immediately. "
    "This makes memory behaviour predictable for most programs.",
    "Reference counting alone cannot reclaim cycles, such as two objects that refer to each other. For that, "
    "CPython adds a generational cycle detector that periodically scans container objects. Objects that "
    "survive a collection move to an older generation that is scanned less often.",
    "You can tune the collector with the gc module. gc.disable() turns off the cycle detector, gc.collect() "
    "forces a full collection, and gc.set_threshold() changes how often each generation is scanned.",
    "In practice, most applications never need to touch these settings. Profiling memory with tracemalloc "
    "is usually a better first step when a program uses more memory than expected.",
]
BREAD_DETOUR = [
    "To bake sourdough bread, start by feeding your starter the night before so it is active and bubbly. "
    "Mix flour and water and let the dough rest for an hour before adding salt.",
    "Fold the dough every thirty minutes for the first two hours, then let it rise until it has grown by "
    "about half. Shape it into a tight ball and proof it overnight in the fridge.",
    "Bake it in a preheated Dutch oven at 250 degrees with the lid on for twenty minutes, then remove the "
    "lid and bake until the crust is deep brown.",
]
TEA_ANSWER = [
    "绿茶最好用八十度左右的水冲泡，水太烫会把茶叶烫熟，让茶汤变苦。第一泡大约浸泡一分钟，之后每一泡可以适当延长时间。",
    "茶具最好先用热水温一下，这样可以让茶叶更快地舒展开来，香气也更容易散发出来。",
    "储存绿茶时要密封、避光、防潮，最好放在冰箱里冷藏，这样可以保存三到六个月而不明显变味。",
    "如果喝茶后感到胃不舒服，可以尝试饭后再喝，或者改喝发酵程度更高的红茶和熟普洱。",
]
STOCK_DETOUR = [
    "今天股市大幅下跌，上证指数收跌百分之三，创下近半年来的最大单日跌幅，成交量明显放大。",
    "分析人士认为，这次下跌主要受到海外市场走弱和人民币汇率波动的影响，短期内市场情绪仍然偏谨慎。",
    "投资者应当控制仓位，避免追涨杀跌，同时关注即将公布的经济数据和央行的政策动向。",
]


@pytest.fixture(scope="module")
def context() -> ScoringContext:
    from evaluators.encoder import load_encoder

    return ScoringContext(encoder=load_encoder(device="cpu"), device="cpu")


def score(context: ScoringContext, reference: str, candidate: str) -> dict[str, float]:
    return SemanticEvaluator().score_pairs([TextPair(reference, candidate)], context)[0]


def test_metadata() -> None:
    assert SemanticEvaluator.metadata() == {
        "name": "semantic",
        "version": "2",
        "higher_is_better": False,
        "primary_metric": "divergence",
        "pairwise": True,
    }
    assert SemanticEvaluator.needs_encoder


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password?",
        "今天天气很好，我们去公园散步吧。",
        "\n\n".join(GC_ANSWER),
        "\n".join(TEA_ANSWER),
    ],
)
def test_identical_texts_do_not_diverge(context: ScoringContext, text: str) -> None:
    result = score(context, text, text)
    assert set(result) == {"similarity", "divergence", "precision", "recall"}
    assert result["divergence"] == pytest.approx(0.0, abs=1e-5)
    assert result["similarity"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("reference", "paraphrase", "unrelated"),
    [
        (
            "How do I reset my password?",
            "What are the steps to change my account password?",
            "The mitochondria is the powerhouse of the cell.",
        ),
        (
            "今天天气很好，我们去公园散步吧。",
            "今天天气不错，一起去公园走走吧。",
            "股票市场今天大幅下跌，投资者损失惨重。",
        ),
        ("我在火车上丢了钱包。", "I lost my wallet on the train.", "The recipe needs two cups of flour."),
    ],
)
def test_paraphrase_diverges_less_than_unrelated(
    context: ScoringContext, reference: str, paraphrase: str, unrelated: str
) -> None:
    close = score(context, reference, paraphrase)["divergence"]
    far = score(context, reference, unrelated)["divergence"]
    assert close + 0.3 < far, (close, far)
    assert far >= 0.8


@pytest.mark.parametrize(
    ("answer", "detour", "joiner"), [(GC_ANSWER, BREAD_DETOUR, "\n\n"), (TEA_ANSWER, STOCK_DETOUR, "\n")]
)
def test_same_opening_then_elsewhere_is_clearly_divergent(
    context: ScoringContext, answer: list[str], detour: list[str], joiner: str
) -> None:
    reference = joiner.join(answer)
    drifting = joiner.join(answer[:1] + detour)
    shortened = joiner.join(answer[:3])
    assert len(unit_spans(reference, 128)) >= 2, "the answer must have several sentences"

    drift = score(context, reference, drifting)
    assert drift["divergence"] >= 0.5, drift
    # Far more divergent than an answer that keeps the content but drops its last paragraph.
    assert drift["divergence"] > score(context, reference, shortened)["divergence"] + 0.3


def test_empty_texts(context: ScoringContext) -> None:
    pairs = [TextPair("", ""), TextPair("  \n ", ""), TextPair("答案。", ""), TextPair("", "An answer.")]
    results = SemanticEvaluator().score_pairs(pairs, context)
    assert [r["similarity"] for r in results] == [1.0, 1.0, 0.0, 0.0]
    assert [r["divergence"] for r in results] == [0.0, 0.0, 1.0, 1.0]


def test_batch_keeps_order_and_matches_single_scoring(context: ScoringContext) -> None:
    pairs = [
        TextPair("\n\n".join(GC_ANSWER), "\n\n".join(GC_ANSWER[:1] + BREAD_DETOUR)),
        TextPair("如何重置我的密码？", "How do I reset my password?"),
        TextPair("", "不是空的。"),
        TextPair("今天天气很好。", "今天天气很好。"),
        TextPair("\n".join(TEA_ANSWER), "\n".join(TEA_ANSWER[:1] + STOCK_DETOUR)),
    ]
    batch = SemanticEvaluator().score_pairs(pairs, context)
    single = [score(context, pair.reference, pair.candidate) for pair in pairs]
    for together, alone in zip(batch, single, strict=True):
        assert together == pytest.approx(alone, abs=1e-4)


class RecordingEncoder:
    """A stand-in encoder: one fixed random unit vector per distinct text; records every call."""

    name = "recording"
    max_seq_length = 512
    similarity_baseline = 0.0

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(abs(hash(text)) % 2**32).standard_normal(16) for text in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 16)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_all_sentences_of_the_batch_go_to_the_encoder_once() -> None:
    encoder = RecordingEncoder()
    long_answer = "\n\n".join(GC_ANSWER)
    pairs = [TextPair(long_answer, long_answer), TextPair("一。", "二。"), TextPair(long_answer, "一。")]
    SemanticEvaluator().score_pairs(pairs, ScoringContext(encoder=encoder, batch_size=7))
    assert len(encoder.calls) == 1
    chunks = encoder.calls[0]
    assert len(chunks) == len(set(chunks)) == len(unit_spans(long_answer, 128)) + 2


def test_missing_encoder_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs an encoder"):
        SemanticEvaluator().score_pairs([TextPair("a", "b")], ScoringContext())


def test_units_respect_the_budget_and_cover_the_text() -> None:
    text = "\n\n".join(GC_ANSWER + TEA_ANSWER) + "\n```python\n" + "value = compute(value)\n" * 60 + "```"
    spans = unit_spans(text, 40)
    assert len(spans) > 8
    assert all(estimate_tokens(text[start:end]) <= 40 for start, end in spans)
    covered = "".join(text[start:end] for start, end in spans)
    assert "".join(covered.split()) == "".join(text.split())


def test_token_estimate() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("hello world") == pytest.approx(2.6)
