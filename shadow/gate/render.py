"""The gate's verdict as a table for people (`shadow gate` without `--json`)."""

from __future__ import annotations

from typing import Any

from shadow.gate.judging import format_effect, format_p


def render_table(result: dict[str, Any]) -> str:
    head = (
        f"GATE {result['verdict'].upper()}  score {result['score']:.0f}  pairs {result['n_pairs']}  "
        f"confidence {result.get('confidence', 0):.0%} (always-valid)"
    )
    rows = [("check", "verdict", "candidate", "primary", "noise", "effect", "tol", "p")]
    for check in result["checks"]:
        rows.append(
            (
                check["name"] + (" *" if check["critical"] else ""),
                check["verdict"].upper() if check["verdict"] != "pass" else "pass",
                _stat(check["candidate"]),
                _stat(check["baseline"]),
                _stat(check["noise"]),
                format_effect(check["effect_size"]),
                f"{check['threshold']:.3g}",
                format_p(check["p_value"]).removeprefix("p ").removeprefix("= ")
                if check["p_value"] is not None
                else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [head, ""]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("")
    lines.append("* critical: failing it fails the gate")
    lines.append("")
    for check in result["checks"]:
        if check["verdict"] != "pass":
            lines.append(f"{check['name']}: {check['reason']}")
    lines.append(f"verdict: {result['reason']}")
    return "\n".join(lines)


def _stat(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    if "absolute_threshold" in stats:
        return f"abs {stats['absolute_threshold']:.3g}"
    if stats.get("n", 0) == 0:
        return "n=0"
    if "rate" in stats:
        return f"{100 * stats['rate']:.1f}% of {stats['n']}"
    return f"med {stats['median']:.3g} p95 {stats['p95']:.3g} n={stats['n']}"


__all__ = ["render_table"]
