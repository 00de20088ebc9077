"""The gate's policy: which checks run, how strict each is, and how the verdicts add up.

A policy is one frozen object. `load_policy(None)` gives the documented defaults, which work out of the
box; a TOML file overrides any part of them:

```toml
confidence = 0.98          # per check, one-sided, always valid (see shadow/gate/stats.py)
pass_score = 95.0          # weighted score of the non-critical checks at or above which the gate passes
marginal_score = 75.0      # below this the gate fails; in between it is inconclusive (a person should look)
min_pairs = 50             # per check: fewer usable observations on either side make the check `nodata`
min_noise_pairs = 20       # secondaries needed before the noise floor replaces the absolute thresholds
mixture_scale = 0.25       # tau of the always-valid normal mixture, in standardized effect units

[checks.length_ratio]
tolerance = 0.10           # effect-size tolerance (see each check's `effect` in checks.py)
critical = false
weight = 2.0
enabled = true
required = true            # when false, `nodata` on this check does not make the gate inconclusive
absolute_threshold = 0.30  # used only when there are too few secondaries for a noise floor
min_pairs = 80
```

Every check and its default is listed by `default_checks()`; `shadow gate --help` and the README point
here.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from evaluators.metrics import checked_metrics
from shadow.core.errors import UserError


class PolicyError(UserError, ValueError):
    """A policy file that cannot be used; the message says which key is wrong and how to fix it."""


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    """How one check judges. `tolerance` is in the units of the check's effect size."""

    enabled: bool = True
    critical: bool = False
    required: bool = True
    weight: float = 1.0
    tolerance: float = 0.0
    absolute_threshold: float | None = None
    min_pairs: int | None = None
    """Overrides the policy-wide `min_pairs` for this check."""


OPERATIONAL_DEFAULTS: dict[str, CheckPolicy] = {
    # From canary practice. Effect: candidate 5xx/transport-error rate; fails above 2 %.
    "error_rate": CheckPolicy(critical=True, tolerance=0.02, min_pairs=20),
    # Effect: candidate failure rate / primary failure rate; fails above 1.5x.
    "failure_rate": CheckPolicy(critical=True, tolerance=1.5, min_pairs=20),
    # Effect: candidate P95 / primary P95 (the reruns' P95 where the mirror path is slower); fails above 1.3x.
    "latency_p95": CheckPolicy(critical=True, tolerance=1.3),
    "ttft_p95": CheckPolicy(critical=True, required=False, tolerance=1.3),
}
"""The operational checks' defaults; the quality checks' defaults are declared by the evaluators."""


def default_checks() -> dict[str, CheckPolicy]:
    """Every check and its default: one per evaluator output that declares a `GateCheck` (semantic
    divergence, length ratio, loop rate, coherence score and break rate), then the operational ones."""
    # A declared `GateCheck` and a `CheckPolicy` share their knobs; the evaluators cannot import the gate.
    knobs = [f.name for f in fields(CheckPolicy) if f.name != "enabled"]
    checks = {
        metric.output.check.name: CheckPolicy(**{knob: getattr(metric.output.check, knob) for knob in knobs})
        for metric in checked_metrics()
    }
    checks.update(OPERATIONAL_DEFAULTS)
    return checks


@dataclass(frozen=True, slots=True)
class GatePolicy:
    confidence: float = 0.98
    pass_score: float = 95.0
    marginal_score: float = 75.0
    min_pairs: int = 50
    min_noise_pairs: int = 20
    mixture_scale: float = 0.25
    checks: dict[str, CheckPolicy] = field(default_factory=default_checks)

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1.0:
            raise PolicyError(f"confidence must be between 0.5 and 1 (e.g. 0.95), got {self.confidence}")
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            raise PolicyError(
                "scores must satisfy 0 <= marginal_score <= pass_score <= 100, "
                f"got marginal_score={self.marginal_score}, pass_score={self.pass_score}"
            )
        if self.min_pairs < 2 or self.min_noise_pairs < 2:
            raise PolicyError("min_pairs and min_noise_pairs must be at least 2")
        if self.mixture_scale <= 0:
            raise PolicyError(f"mixture_scale must be positive, got {self.mixture_scale}")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def check(self, name: str) -> CheckPolicy:
        return self.checks.get(name, CheckPolicy(enabled=False))

    def min_pairs_for(self, name: str) -> int:
        own = self.check(name).min_pairs
        return own if own is not None else self.min_pairs

    def with_check(self, name: str, **values: Any) -> GatePolicy:
        """A copy with one check's settings changed (tests and callers that tweak one knob)."""
        checks = dict(self.checks)
        checks[name] = replace(self.check(name) if name in checks else CheckPolicy(), **values)
        return replace(self, checks=checks)


_TOP_KEYS = {f.name for f in fields(GatePolicy)} - {"checks"}
_CHECK_KEYS = {f.name for f in fields(CheckPolicy)}


def load_policy(path: str | os.PathLike[str] | None = None) -> GatePolicy:
    """The default policy, overridden by the TOML file at `path` when one is given."""
    if path is None:
        return GatePolicy()
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise PolicyError(f"policy file {os.fspath(path)!r} does not exist; check the --policy path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {os.fspath(path)!r} is not valid TOML: {exc}") from exc
    return policy_from_dict(raw, source=os.fspath(path))


def policy_from_dict(raw: dict[str, Any], *, source: str = "policy") -> GatePolicy:
    unknown = set(raw) - _TOP_KEYS - {"checks"}
    if unknown:
        raise PolicyError(
            f"{source}: unknown key(s) {sorted(unknown)}; known keys are {sorted(_TOP_KEYS | {'checks'})}"
        )
    top: dict[str, Any] = {}
    for key in _TOP_KEYS & set(raw):
        default = getattr(GatePolicy(), key)
        top[key] = _coerce(raw[key], type(default), f"{source}: {key}")
    defaults = default_checks()
    checks = dict(defaults)
    raw_checks = raw.get("checks", {})
    if not isinstance(raw_checks, dict):
        raise PolicyError(f"{source}: [checks] must be a table of check names")
    for name, values in raw_checks.items():
        if name not in defaults:
            raise PolicyError(f"{source}: unknown check {name!r}; known checks are {sorted(defaults)}")
        if not isinstance(values, dict):
            raise PolicyError(f"{source}: [checks.{name}] must be a table")
        bad = set(values) - _CHECK_KEYS
        if bad:
            raise PolicyError(
                f"{source}: [checks.{name}] unknown key(s) {sorted(bad)}; known: {sorted(_CHECK_KEYS)}"
            )
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            target = {"enabled": bool, "critical": bool, "required": bool, "min_pairs": int}.get(key, float)
            coerced[key] = _coerce(value, target, f"{source}: checks.{name}.{key}")
            _check_range(key, coerced[key], f"{source}: checks.{name}.{key}")
        checks[name] = replace(defaults[name], **coerced)
    return GatePolicy(**top, checks=checks)


def _coerce(value: Any, target: type, where: str) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value
        raise PolicyError(f"{where} must be true or false, got {value!r}")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise PolicyError(f"{where} must be a whole number, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise PolicyError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    raise PolicyError(f"{where} must be a number, got {value!r}")


def _check_range(key: str, value: Any, where: str) -> None:
    """A check's numbers from a file: tolerances, thresholds and weights are sizes, never negative."""
    if key in ("tolerance", "absolute_threshold", "weight") and value < 0:
        raise PolicyError(f"{where} must be zero or more (it is a size, in the check's units), got {value!r}")
    if key == "min_pairs" and value < 2:
        raise PolicyError(f"{where} must be at least 2, got {value!r}")


__all__ = [
    "CheckPolicy",
    "OPERATIONAL_DEFAULTS",
    "default_checks",
    "GatePolicy",
    "PolicyError",
    "load_policy",
    "policy_from_dict",
]
