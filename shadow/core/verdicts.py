"""The closed sets of verdicts, as enums every module compares against (never bare strings).

They are `StrEnum`s: each member equals its string and serialises as it, so the gate's JSON (read by Argo
Rollouts, Flagger and people) is unchanged.

>>> Verdict("pass") is Verdict.PASS, CheckVerdict.NODATA == "nodata"
(True, True)
"""

from __future__ import annotations

from enum import StrEnum

from shadow.core.errors import ExitCode


class Verdict(StrEnum):
    """The gate's answer for a candidate."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> ExitCode:
        return {
            Verdict.PASS: ExitCode.OK,
            Verdict.FAIL: ExitCode.FAIL,
            Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        }[self]


class CheckVerdict(StrEnum):
    """One check's answer; `nodata` is its own outcome, never a silent pass (as Kayenta judges)."""

    PASS = "pass"
    FAIL = "fail"
    NODATA = "nodata"
    ERROR = "error"
