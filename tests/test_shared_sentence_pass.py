"""Semantic and coherence share one sentence-level encoding pass: the sentences semantic embeds for a long
answer are the ones coherence reads, so coherence's encoder call finds every one of them in the cache."""

from __future__ import annotations

import pytest

from evaluators.base import ScoringContext, TextPair
from evaluators.coherence import CoherenceEvaluator
from evaluators.semantic import SemanticEvaluator, unit_spans

ANSWER = (
    "垃圾回收器会定期扫描堆内存，找出不再被引用的对象。"
    "标记阶段从根对象出发，遍历所有可达的对象并做上标记。"
    "清除阶段回收没有标记的对象，把它们占用的内存还给分配器。"
    "分代回收把对象按存活时间分组，年轻代回收得更频繁。"
    "大多数对象很快就不再使用，所以年轻代的回收代价很小。"
    "长期存活的对象会被晋升到老年代，老年代的回收次数少得多。"
    "这样，程序的停顿时间就能保持在可以接受的范围内。"
    "并发回收让回收线程和程序线程同时运行，进一步缩短停顿。"
    "代价是回收器需要写屏障来跟踪程序在回收期间对引用的修改。"
    "选择哪一种回收器，要看程序更在意吞吐量还是停顿时间。"
)
EDITED = ANSWER.replace("这样，程序的停顿时间就能保持在可以接受的范围内。", "最后，回收器会整理碎片。")


@pytest.fixture(scope="module")
def encoder():
    from evaluators.encoder import load_encoder

    return load_encoder(device="cpu")


def test_coherence_encodes_nothing_semantic_has_not_encoded(encoder) -> None:
    context = ScoringContext(encoder=encoder, device="cpu")
    encoder.cache.clear()
    SemanticEvaluator().score_pairs([TextPair(ANSWER, EDITED)], context)
    encoded_before = encoder.stats.encoded_texts
    hits_before = encoder.stats.cache_hits

    results = CoherenceEvaluator().score_texts([ANSWER, EDITED], [None, None], context)

    assert all(result["applicable"] for result in results)
    sentences = sum(result["sentences"] for result in results)
    assert encoder.stats.encoded_texts == encoded_before, "coherence re-encoded a sentence semantic had"
    assert (
        encoder.stats.cache_hits - hits_before
        == len(
            {ANSWER[a:b] for a, b in unit_spans(ANSWER, 128)}
            | {EDITED[a:b] for a, b in unit_spans(EDITED, 128)}
        )
        <= sentences
    )


def test_an_edit_leaves_the_other_sentences_encoded_once(encoder) -> None:
    context = ScoringContext(encoder=encoder, device="cpu")
    before = encoder.stats.encoded_texts
    SemanticEvaluator().score_pairs([TextPair(ANSWER + "再见。", EDITED + "再见。")], context)
    # Of the two texts only the appended sentence is new: every other sentence was encoded above.
    assert encoder.stats.encoded_texts - before == 1
