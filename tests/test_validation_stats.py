"""The validation scripts' AUROC: originals above damaged texts is 1, below is 0, a tie counts half."""

import numpy as np

from tests.validation_stats import auroc


def test_auroc_orientation_and_ties() -> None:
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
