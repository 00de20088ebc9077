"""Turns the report's data and charts into one self-contained HTML file.

Everything shown is escaped: Jinja's autoescape for the server-rendered parts, and for the pair table the
data travel as JSON in a `<script type="application/json">` block (with `<`, `>`, `&`, U+2028 and U+2029
escaped so no text can close the block) and are put on the page with `textContent` only. A strict
Content-Security-Policy allows the one inline script by its hash and nothing from the network, as defence
in depth. Invisible bidi and format characters are shown as visible markers wherever untrusted text is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from reports.build import ReportOptions, build_report
from reports.charts import all_charts
from reports.export_table import scores_frame

INVISIBLE_RE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
"""Bidi overrides, isolates and marks, zero-width characters: they can make text read other than it is."""
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def json_for_html(data: Any) -> str:
    """JSON that is safe inside a `<script type="application/json">` element.

    >>> json_for_html({"a": "</script><b>&"})
    '{"a":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u0026"}'
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _JSON_ESCAPE_RE.sub(lambda m: _JSON_ESCAPES[m.group(0)], text)


def visible(text: Any) -> Markup:
    """Escaped text with invisible format characters replaced by a visible marker such as ‹U+202E›.

    >>> str(visible("a\\u202e<b>"))
    'a<span class="ctl" title="invisible character">‹U+202E›</span>&lt;b&gt;'
    """
    escaped = str(escape("" if text is None else str(text)))
    return Markup(
        INVISIBLE_RE.sub(
            lambda m: f'<span class="ctl" title="invisible character">‹U+{ord(m.group(0)):04X}›</span>',
            escaped,
        )
    )


def visible_text(text: Any) -> str:
    """Plain text with invisible format characters replaced by visible markers (for `<title>`, options).

    >>> visible_text("ab\u200bc")
    'ab‹U+200B›c'
    """
    return INVISIBLE_RE.sub(lambda m: f"‹U+{ord(m.group(0)):04X}›", "" if text is None else str(text))


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def content_security_policy(script: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src '{script_hash(script)}'",
            # matplotlib's SVG uses style attributes; styles cannot run code.
            "style-src 'unsafe-inline'",
            "img-src data:",
            "font-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        visible=visible,
        pct=fmt_pct,
        num=fmt_num,
        ms=fmt_ms,
        count=fmt_count,
        cell=fmt_cell,
        metricfmt=fmt_metric,
        visible_text=visible_text,
    )
    return env


def _static(name: str) -> str:
    return resources.files("reports").joinpath("static", name).read_text(encoding="utf-8")


def render_html(report: dict[str, Any], charts: dict[str, str]) -> str:
    """The page. `report` is `build.build_report(...)`, `charts` is `charts.all_charts(frame)`."""
    script = _static("report.js")
    table_data = {
        "pairs": report["pairs"],
        "total_pairs": report["summary"]["counts"]["pairs"],
        "table_cap": report["summary"]["sampling"]["table_cap"],
    }
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        summary=report["summary"],
        gate=report["gate"],
        charts={name: Markup(svg) for name, svg in charts.items()},  # our own SVG: fixed ASCII labels
        css=Markup(_static("report.css")),
        script=Markup(script),
        csp=content_security_policy(script),
        table_json=Markup(json_for_html(table_data)),
        segment_groups=_group_segments(report["segments"]),
        labels=_labels(report),
        formats=_formats(report),
    )


def _labels(report: Mapping[str, Any]) -> dict[str, str]:
    """Column and legend names: each panel's declared label, and the operational columns'."""
    labels = {name: panel["label"] for name, panel in report["metrics"].items()}
    return {**labels, "errors": "error rate", "latency": "latency P95"}


def _formats(report: Mapping[str, Any]) -> dict[str, str]:
    formats = {
        name: ("pct" if panel["kind"] == "rate" else "num") for name, panel in report["metrics"].items()
    }
    return {**formats, "errors": "pct", "latency": "ms"}


def fmt_metric(value: Any, kind: str) -> str:
    """A segment cell by its metric's kind: a share, a duration or a number."""
    if kind == "pct":
        return fmt_pct(value)
    if kind == "ms":
        return fmt_ms(value)
    return fmt_num(value, 2)


def render_report(
    records: Sequence[Mapping[str, Any]], gate: Mapping[str, Any], options: ReportOptions | None = None
) -> str:
    """Scored pairs and the gate's result → the HTML page (flattened once, for the data and the charts)."""
    frame = scores_frame(records)
    report = build_report(records, gate, options, frame=frame)
    return render_html(report, all_charts(frame))


def _group_segments(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["dimension"], []).append(row)
    return list(groups.items())


# --- number formats (None shows as an en dash) ----------------------------------------------------------


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage.

    >>> fmt_pct(0.1234), fmt_pct(None)
    ('12.3%', '–')
    """
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def fmt_cell(value: Any, digits: int = 3) -> Markup:
    """A gate statistic: a number formatted, anything else shown as (escaped, visible) text."""
    if value is None:
        return Markup("–")
    if isinstance(value, int) and not isinstance(value, bool):
        return Markup(fmt_count(value))
    if isinstance(value, float):
        return Markup(fmt_num(value, digits))
    if isinstance(value, Mapping):  # e.g. {"n": 400, "events": 7, "rate": 0.0175}
        parts = [Markup("{} {}").format(visible(key), fmt_cell(item, digits)) for key, item in value.items()]
        return Markup("<br>").join(parts)
    return visible(value)


def fmt_count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


__all__ = [
    "INVISIBLE_RE",
    "content_security_policy",
    "json_for_html",
    "render_html",
    "render_report",
    "script_hash",
    "visible",
    "visible_text",
]
