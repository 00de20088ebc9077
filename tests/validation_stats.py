"""The one AUROC the validation scripts report (`scripts/validate_evaluators`, `scripts/fit_coherence`,
`scripts/coherence_lm_signal`, `scripts/coherence_sequence_probe`), so that their numbers compare."""

from __future__ import annotations

from collections.abc import Sequence


def auroc(originals: Sequence[float], damaged: Sequence[float]) -> float:
    """AUROC of telling originals (which should score higher) from damaged texts: the Mann-Whitney U of
    the originals over the pairs, ties counting half."""
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(originals, damaged, method="asymptotic").statistic
    return float(u / (len(originals) * len(damaged)))
