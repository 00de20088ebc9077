"""The report's two summaries of a column: a distribution (`describe`) and a rate with its interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def describe(values: pd.Series) -> dict[str, Any]:
    """n, mean and percentiles of the non-missing values.

    >>> describe(pd.Series([1.0, 2.0, 3.0, None]))["p50"]
    2.0
    """
    values = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if values.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p95": None}
    p50, p90, p95 = (float(v) for v in np.percentile(values, [50, 90, 95]))
    return {"n": int(values.size), "mean": float(values.mean()), "p50": p50, "p90": p90, "p95": p95}


def rate(flags: pd.Series) -> dict[str, Any]:
    """Share of True among the known flags, with its 95% Wilson interval.

    >>> rate(pd.Series([True, False, None]))["rate"]
    0.5
    """
    known = flags.dropna().astype(bool)
    n = int(known.size)
    if n == 0:
        return {"n": 0, "rate": None, "low": None, "high": None}
    share = float(known.mean())
    z = 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # Clamped so the interval always contains the share, despite rounding at 0 and 1.
    return {
        "n": n,
        "rate": share,
        "low": min(share, max(0.0, centre - half)),
        "high": max(share, min(1.0, centre + half)),
    }


__all__ = ["describe", "rate"]
