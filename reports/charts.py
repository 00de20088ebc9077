"""The report's charts: matplotlib figures rendered to inline SVG strings.

Every chart compares the candidate with the primary and, where there is one, the noise floor (the primary
against itself: baseline vs secondary). Labels are fixed ASCII text chosen here; no prompt, answer or
segment tag ever reaches a chart, so the SVG carries no untrusted text.

ECDFs are drawn from 400 quantiles of all values: the curve is exact at those points for any number of
pairs, and the SVG stays the same size at 100 pairs or 100,000.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evaluators.metrics import Metric  # noqa: E402
from reports.numbers import rate  # noqa: E402
from reports.panels import is_rate, panel_metrics, side_flags  # noqa: E402

COLORS = {"baseline": "#0072B2", "candidate": "#D55E00", "noise": "#7f7f7f", "secondary": "#7f7f7f"}
"""Okabe-Ito blue and vermillion (colour-blind safe); the noise floor in grey, dashed."""
LABELS = {
    "baseline": "primary",
    "candidate": "candidate",
    "noise": "noise floor",
    "secondary": "primary again",
}
ECDF_POINTS = 400
STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller files, crisp, selectable
    "svg.hashsalt": "shadow-report",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "figure.dpi": 72,
}
_PROLOG_RE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_SIZE_RE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def all_charts(frame: pd.DataFrame, metrics: Sequence[Metric] | None = None) -> dict[str, str]:
    """Chart name → inline SVG markup: one per report panel (named like the panel), latency and TTFT."""
    metrics = panel_metrics(frame) if metrics is None else metrics
    charts = {metric.name: metric_chart(frame, metric) for metric in metrics}
    charts.update(
        {
            "latency": ecdf_chart(
                "latency",
                {
                    side: frame.loc[frame[f"{side}_ok"].eq(True), f"{side}_latency_ms"]
                    for side in ("baseline", "candidate")
                },
                xlabel="latency, ms (log scale)",
                log_x=True,
            ),
            "ttft": ecdf_chart(
                "ttft",
                {
                    side: frame.loc[frame[f"{side}_ok"].eq(True), f"{side}_ttft_ms"]
                    for side in ("baseline", "candidate")
                },
                xlabel="time to first token, ms (log scale)",
                log_x=True,
            ),
        }
    )
    return charts


def metric_chart(frame: pd.DataFrame, metric: Metric) -> str:
    """A rate per side for events, ECDFs for numbers; pairwise numbers against their noise floor."""
    name = re.sub(r"[^a-z0-9_]", "_", metric.name.lower())
    if is_rate(metric):
        sides = ("baseline", "candidate", "secondary")
        flags = {side: side_flags(frame, metric.column(side), metric) for side in sides}
        if metric.pairwise:
            flags = {"candidate": side_flags(frame, metric.column(), metric)}
            if metric.output.noise_floor:
                flags["noise"] = side_flags(frame, metric.column(noise=True), metric)
        return rate_chart(name, flags, ylabel=f"answers: {metric.label}")
    if metric.pairwise:
        series = {"candidate": frame[metric.column()]}
        if metric.output.noise_floor:
            series["noise"] = frame[metric.column(noise=True)]
    else:
        series = {side: frame[metric.column(side)] for side in ("baseline", "candidate", "secondary")}
    return ecdf_chart(name, series, xlabel=metric.label)


def ecdf_chart(name: str, series: dict[str, pd.Series], *, xlabel: str, log_x: bool = False) -> str:
    """Empirical CDFs of each side; a side with no values is left out of the plot and the legend."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 2.9), layout="constrained")
        drawn = 0
        for side, values in series.items():
            points = ecdf_points(values, positive_only=log_x)
            if points is None:
                continue
            x, y = points
            n = int(values.notna().sum())
            ax.plot(
                x,
                y,
                drawstyle="steps-post",
                color=COLORS[side],
                linestyle="--" if side in ("noise", "secondary") else "-",
                linewidth=1.6,
                label=f"{LABELS[side]} (n={n:,})",
            )
            drawn += 1
        if log_x and drawn:
            ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of pairs <= x")
        if drawn:
            ax.legend(loc="lower right")
        else:
            _no_data(ax)
        return to_svg(fig, name)


def rate_chart(name: str, flags: dict[str, pd.Series], *, ylabel: str) -> str:
    """Share of True per side with a 95% Wilson interval."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 2.9), layout="constrained")
        names, shares, errors, colors = [], [], [[], []], []
        for side, values in flags.items():
            r = rate(values)
            if r["rate"] is None:
                continue
            names.append(f"{LABELS[side]}\n(n={r['n']:,})")
            shares.append(r["rate"])
            errors[0].append(r["rate"] - r["low"])
            errors[1].append(r["high"] - r["rate"])
            colors.append(COLORS[side])
        if names:
            bars = ax.bar(names, shares, color=colors, yerr=errors, capsize=4, width=0.55)
            ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares], padding=3)
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
            ax.set_ylim(0, max(0.05, max(h for h in np.array(shares) + np.array(errors[1]))) * 1.25)
            ax.grid(axis="x", visible=False)
        else:
            _no_data(ax)
        ax.set_ylabel(ylabel)
        return to_svg(fig, name)


def ecdf_points(values: pd.Series, *, positive_only: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, share <= x) at up to ECDF_POINTS quantiles of the finite values; None when there are none.

    >>> x, y = ecdf_points(pd.Series([3.0, 1.0, 2.0]))
    >>> x.tolist(), y.tolist()
    ([1.0, 2.0, 3.0], [0.3333333333333333, 0.6666666666666666, 1.0])
    """
    data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    data = data[np.isfinite(data)]
    if positive_only:
        data = data[data > 0]
    if data.size == 0:
        return None
    data.sort()
    if data.size <= ECDF_POINTS:
        return data, np.arange(1, data.size + 1) / data.size
    ranks = np.unique(np.linspace(0, data.size - 1, ECDF_POINTS).round().astype(int))
    return data[ranks], (ranks + 1) / data.size


def to_svg(fig: Figure, name: str) -> str:
    """The figure as an `<svg>` element for inlining: no XML prolog, scalable, ids unique to the chart."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": f"shadow-report-{name}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = _PROLOG_RE.sub("", buffer.getvalue(), count=1)
    svg = _SIZE_RE.sub(rf'<svg\1 class="chart" role="img" aria-label="{name} chart"', svg, count=1)
    return svg.strip()


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888")
    ax.set_xticks([])
    ax.set_yticks([])


__all__ = ["COLORS", "LABELS", "all_charts", "ecdf_chart", "ecdf_points", "rate_chart", "to_svg"]
