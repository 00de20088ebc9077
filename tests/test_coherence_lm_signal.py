"""scripts/coherence_lm_signal reads each token's surprise from the row of logits that predicts it: a
sentence the text before it repeats is far less surprising in context than alone, an unrelated one is not.

Needs llama.cpp and Gemma-3-270M, which the set-up installs; SHADOW_SKIP_LOCAL_MODELS=1 skips it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "coherence_lm_signal"


@pytest.fixture(scope="module")
def surprise():
    if os.environ.get("SHADOW_SKIP_LOCAL_MODELS") == "1":
        pytest.skip("SHADOW_SKIP_LOCAL_MODELS=1")
    loader = importlib.machinery.SourceFileLoader("coherence_lm_signal", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    from shadow.local_models import gemma3_path

    return module.Surprise(gemma3_path(), threads=2, gpu_layers=0)


def test_a_repeated_sentence_gains_from_its_context_an_unrelated_one_does_not(surprise):
    sentence = "The committee approved the new budget for the city library on Tuesday."
    pieces = surprise.pieces([sentence, sentence, "Penguins cannot fly but they swim very well."], "en")
    relative, gains = surprise.context_gains(pieces)
    assert relative[0] == 0.0  # the first sentence has no context: read alone, either way
    assert relative[1] > 0.5 and gains[1] > 20.0, (relative, gains)
    assert relative[2] < 0.3, (relative, gains)


def test_surprises_are_negative_log_probabilities_of_the_tokens_read(surprise):
    tokens = surprise.pieces(["北京是中国的首都。"], "zh")[0]
    values = surprise.surprises(tokens)
    assert len(values) == len(tokens) and np.all(values >= 0.0)
    # Read again after another text: the same tokens after <bos> give the same surprises (the cache is reset).
    surprise.surprises(surprise.pieces(["Something else entirely."], "en")[0])
    assert np.allclose(surprise.surprises(tokens), values, atol=1e-3)
