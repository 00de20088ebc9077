"""The evaluators from a notebook: score a pandas DataFrame of pairs, get flat metric columns back.

Each row is a pair with the JSONL field names as columns (``baseline``, ``candidate``, ``candidate_error``,
...; `pandas.read_json(path, lines=True)` gives exactly that). The result is the input with one column per
metric, named by its path in a scores file: ``semantic.divergence``, ``length.ratio``,
``loop.candidate.flag``, ``noise.semantic.divergence``. A null result (failed side) leaves NaN.

    import pandas as pd
    from evaluators.frame import score_frame

    scored = score_frame(pd.read_json("pairs.jsonl", lines=True), evaluators=["length", "loop"])
    scored[["length.ratio", "loop.candidate.flag"]].describe()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from evaluators.base import Evaluator
from evaluators.runner import DEFAULT_CHUNK_SIZE, ScoreRunner, apply_result, batched
from shadow.core.pairs import Pair

if TYPE_CHECKING:
    import pandas as pd


def score_frame(
    df: pd.DataFrame,
    evaluators: str | Sequence[str | Evaluator] | None = None,
    device: str = "auto",
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    runner: ScoreRunner | None = None,
) -> pd.DataFrame:
    """Score every row of `df` (a pair) and return a copy with the metric columns added (same index).

    `evaluators`: names (``"length,loop"`` or a list), evaluator instances, or None for all registered.
    Columns the input already had under a metric's name are replaced.
    """
    import pandas as pd

    runner = runner or ScoreRunner.build(evaluators, device=device, batch_size=batch_size)
    records = (_pair_of(row) for row in df.to_dict("records"))
    flat: list[dict[str, Any]] = []
    for chunk in batched(records, chunk_size):
        for by_name in runner.score_batch(chunk):
            scored: dict[str, Any] = {}
            for evaluator in runner.evaluators:
                apply_result(scored, evaluator, by_name[evaluator.name])
            scored.pop("scored_by", None)
            flat.append(flatten(scored))
    scores = pd.DataFrame(flat, index=df.index)
    kept = df.drop(columns=[c for c in scores.columns if c in df.columns])
    return pd.concat([kept, scores], axis=1)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level with dotted keys; None leaves nothing (NaN in a frame), lists stay whole.

    >>> flatten({"loop": {"candidate": {"flag": True}, "baseline": None}, "length": {"ratio": 1.5}})
    {'loop.candidate.flag': True, 'length.ratio': 1.5}
    """
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif value is not None:
            out[name] = value
    return out


def _pair_of(row: Mapping[str, Any]) -> Pair:
    values = {str(key): _unmissing(value) for key, value in row.items()}
    values.setdefault("experiment", "")
    for key, value in values.items():
        # pandas makes an int column with a gap float (200 -> 200.0); a status is an int in the pair format.
        if key.endswith("_status") and isinstance(value, float) and value.is_integer():
            values[key] = int(value)
    if isinstance(values.get("created_at"), datetime):
        values["created_at"] = values["created_at"].isoformat()
    return Pair.from_json(values)


def _unmissing(value: Any) -> Any:
    """pandas fills gaps with NaN / NaT / NA; the pair format means None."""
    if value is None or isinstance(value, str | Mapping | list | tuple):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item") and not isinstance(value, datetime):
        return value.item()  # numpy scalars (e.g. an int64 status) to plain Python
    return value


__all__ = ["flatten", "score_frame"]
