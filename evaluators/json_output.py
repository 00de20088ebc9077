"""JSON answers: did a side asked for JSON answer with JSON, and with JSON its schema accepts?

A request asks for JSON with the chat API's ``response_format`` (``{"type": "json_object"}``, or
``{"type": "json_schema", "json_schema": {"name", "schema", ...}}``) or the Responses API's ``text.format``
(``{"type": "json_object"}`` or ``{"type": "json_schema", "name", "schema", ...}``). Only such requests are
judged (`applicable`); everything else, plain chat included, gets ``applicable: false`` and costs a dict
lookup.

Per side:

- `invalid`: the text is not one JSON document as a strict client reads it (``json.loads`` of the whole
  text; surrounding whitespace is allowed, ``NaN`` / ``Infinity`` are not JSON). **A fenced answer
  (```` ```json ... ``` ````) counts as invalid**: JSON mode promises a bare document, and a client that calls
  ``json.loads`` on the content fails on the fence. `fenced` says when the text is valid JSON once one
  surrounding fence is removed, so a report can tell a wrapped answer from a broken one.
- `schema_invalid` (json_schema formats only, `has_schema`): the document does not validate against the
  requested schema. A fenced document is validated without its fence (the fence is already `invalid`); an
  unparseable text is schema-invalid too. A schema that is itself broken is not held against the answer.
- `problem`: a short value-free name of what went wrong (for counting: "not JSON", "cut off at the length
  limit", "fenced in ```json", "schema: 'required' at $.city"); `error`: the first error, for people.

A side that answered with a refusal or tool calls and no text did not give a JSON answer and is not
applicable (the refusal and tools evaluators judge those). Schemas are checked with the `jsonschema`
package when it is importable (it comes with the `ray` extra); otherwise with `validate_schema`'s own small
validator (type, required, enum, const, properties, items, additionalProperties), which is enough for the
schemas function calling and structured outputs use. The tools evaluator shares these helpers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext, SideText
from evaluators.json_rules import strict_loads, validate_schema

_FENCE_RE = re.compile(r"\A\s*```[ \t]*(?:json|JSON)?[ \t]*\r?\n(?P<body>.*?)\r?\n?[ \t]*```\s*\Z", re.DOTALL)


def requested_format(request: Mapping[str, Any] | None) -> tuple[str, Any] | None:
    """("json_object", None) or ("json_schema", schema or None) when the request asks for JSON, else None.

    >>> requested_format({"response_format": {"type": "json_object"}})
    ('json_object', None)
    >>> requested_format({"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}})
    ('json_schema', {'type': 'object'})
    """
    if not isinstance(request, Mapping):
        return None
    fmt = request.get("response_format")  # chat completions
    if not isinstance(fmt, Mapping):
        text = request.get("text")  # Responses API
        fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        inner = fmt.get("json_schema")
        holder = inner if isinstance(inner, Mapping) else fmt
        schema = holder.get("schema")
        return "json_schema", schema if isinstance(schema, Mapping) else None
    return None


def unfence(text: str) -> str | None:
    """The body of one ```` ``` ```` or ```` ```json ```` fence around the whole text, else None."""
    match = _FENCE_RE.match(text)
    return match.group("body") if match else None


def judge_json(text: str | None, schema: Any, finish_reason: str | None = None) -> dict[str, Any]:
    """`invalid`, `fenced`, `schema_invalid`, `problem` and `error` of one text (see the module docstring)."""
    out: dict[str, Any] = {"invalid": False, "fenced": False, "schema_invalid": False, "problem": None}
    out["error"] = None
    text = text or ""
    valid, value, error = strict_loads(text)
    if not valid:
        out["invalid"] = True
        body = unfence(text)
        fenced_ok, fenced_value, _ = strict_loads(body) if body is not None else (False, None, None)
        if fenced_ok:
            out["fenced"] = True
            out["problem"], out["error"] = "fenced in ```json", "a JSON document inside a ``` fence"
            valid, value = True, fenced_value
        elif not text.strip():
            out["problem"], out["error"] = "empty answer", "the answer is empty"
        elif finish_reason == "length":
            out["problem"], out["error"] = "cut off at the length limit", f"{error} (finish_reason length)"
        else:
            out["problem"], out["error"] = "not JSON", error
    if schema is not None:
        if not valid:
            out["schema_invalid"] = True
        else:
            found = validate_schema(value, schema)
            if found is not None:
                out["schema_invalid"] = True
                if not out["invalid"]:
                    out["problem"], out["error"] = found.problem, f"{found.path}: {found.message}"
    return out


class JsonOutputEvaluator(Evaluator):
    """Per text, for requests that ask for JSON: `{"applicable", "has_schema", "invalid", "fenced",
    "schema_invalid", "problem", "error"}`."""

    name: ClassVar[str] = "json"
    version: ClassVar[str] = "1.0"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "invalid"
    pairwise: ClassVar[bool] = False
    needs_text: ClassVar[bool] = False
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("applicable", "asked for JSON", kind="flag", worse=None),
        Output(
            "invalid",
            "invalid JSON rate",
            kind="flag",
            applicable="applicable",
            event="answers with invalid JSON",
            population="answers asked for JSON",
            # Effect: candidate invalid rate - primary invalid rate on the same JSON-mode requests. Not
            # required: traffic without JSON mode has nothing to judge and must not hold the verdict; a
            # scores file without this evaluator is judged as before (no check).
            check=GateCheck(
                "invalid_json", critical=True, required=False, tolerance=0.02, skip_unscored=True
            ),
            severity=(0.02, 0.05),
            badness=0.6,
            detail="problem",
        ),
        Output(
            "schema_invalid",
            "schema violation rate",
            kind="flag",
            applicable="has_schema",
            event="answers JSON its schema rejects",
            population="answers asked for a JSON schema",
            check=GateCheck("json_schema_invalid", required=False, tolerance=0.02, skip_unscored=True),
            severity=(0.02, 0.05),
            badness=0.4,
            detail="problem",
        ),
        Output("fenced", "JSON fenced in ```", kind="flag", applicable="applicable"),
    )

    def score_sides(self, items: Sequence[SideText], context: ScoringContext) -> list[dict[str, Any]]:
        return [self._one(item) for item in items]

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        """Without a request nothing asks for JSON: every text is not applicable."""
        return [self._one(SideText(text, reason)) for text, reason in zip(texts, finish_reasons, strict=True)]

    @staticmethod
    def _one(item: SideText) -> dict[str, Any]:
        wanted = requested_format(item.request)
        answered_otherwise = (item.tool_calls or item.refusal) and not (item.text or "").strip()
        if wanted is None or answered_otherwise:
            return {"applicable": False, "has_schema": False}
        kind, schema = wanted
        result = {"applicable": True, "has_schema": schema is not None, "format": kind}
        result.update(judge_json(item.text, schema, item.finish_reason))
        return result


__all__ = ["JsonOutputEvaluator", "judge_json", "requested_format", "unfence"]
