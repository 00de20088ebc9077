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

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext, SideText

try:  # optional: an exact validator when installed; the fallback below covers the common keywords
    import jsonschema as _jsonschema
except ImportError:  # pragma: no cover - depends on the environment
    _jsonschema = None

_FENCE_RE = re.compile(r"\A\s*```[ \t]*(?:json|JSON)?[ \t]*\r?\n(?P<body>.*?)\r?\n?[ \t]*```\s*\Z", re.DOTALL)


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not JSON")


def _number(text: str) -> int | float:
    """A JSON number by value: a whole one is an int (``1.0``, ``1e2``), so notations compare equal."""
    value = float(text)
    return int(value) if value.is_integer() else value


def strict_loads(text: str, *, by_value: bool = False) -> tuple[bool, Any, str | None]:
    """(valid, value, error): `text` as one strict JSON document (no NaN / Infinity). `by_value` reads
    whole floats as ints (`canonical`'s numbers).

    >>> strict_loads(' {"a": 1} ')
    (True, {'a': 1}, None)
    >>> strict_loads("NaN")[0], strict_loads("{'a': 1}")[0], strict_loads("[1.0, 2.5]", by_value=True)[1]
    (False, False, [1, 2.5])
    """
    try:
        if by_value:
            return True, json.loads(text, parse_constant=_reject_constant, parse_float=_number), None
        return True, json.loads(text, parse_constant=_reject_constant), None
    except _NotJSON as exc:
        return False, None, str(exc)
    except json.JSONDecodeError as exc:
        return False, None, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except (RecursionError, OverflowError):
        return False, None, "nested too deeply or a number too large"


def canonical(value: Any) -> Any:
    """A JSON value with numbers by value: a whole float is an int (1.0 -> 1), so equal values compare
    equal whatever their notation. Booleans stay booleans (true is not 1)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def canonical_dumps(value: Any) -> str:
    """One string per JSON value: sorted keys, no whitespace, numbers by value, Unicode as itself.

    >>> canonical_dumps({"b": 1.0, "a": "\\u00e9"}) == canonical_dumps({"a": "é", "b": 1})
    True
    """
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- schemas ----------------------------------------------------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
}
_CACHE_LIMIT = 512


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """The first violation found: `keyword` and `path` name it without the values, `message` with them."""

    keyword: str
    path: str
    message: str

    @property
    def problem(self) -> str:
        return f"schema: {self.keyword!r} at {self.path}"


# Keywords the small validator does not implement; a schema that uses one goes to `jsonschema` when it is
# installed (without it they are ignored). Annotations (title, description, default, format ...) and
# unknown keywords are ignored by both, as JSON Schema says.
_UNCOVERED = frozenset(
    [
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
        "$schema",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "prefixItems",
        "additionalItems",
        "unevaluatedItems",
        "unevaluatedProperties",
    ]
)
_SCHEMAS: dict[str, tuple[bool, Any]] = {}


def validate_schema(instance: Any, schema: Any, *, use_package: bool | None = None) -> SchemaProblem | None:
    """The first way `instance` violates `schema`, or None (valid, or a schema that cannot be used).

    Schemas that use only type, enum, const, required, properties, items and additionalProperties (what
    function calling and structured outputs mostly use) are checked by the small validator, which is fast
    and agrees with JSON Schema on them; others by the `jsonschema` package when it is importable.
    `use_package` False forces the small validator (which then ignores the keywords it does not know).

    >>> validate_schema({"unit": "kelvin"}, {"properties": {"unit": {"enum": ["c", "f"]}}}).problem
    "schema: 'enum' at $.unit"
    """
    if not isinstance(schema, Mapping):
        return None
    try:
        key = json.dumps(schema, default=str)  # equal schemas from one client serialise alike
    except (TypeError, ValueError, RecursionError):
        return None
    entry = _SCHEMAS.get(key)
    if entry is None:
        if len(_SCHEMAS) >= _CACHE_LIMIT:
            _SCHEMAS.clear()
        entry = _SCHEMAS[key] = (_covered(schema), None)
    covered, validator = entry
    package = _jsonschema is not None and use_package is not False
    if covered or not package:
        try:
            return _validate_small(instance, schema, "$", 0)
        except (TypeError, ValueError, AttributeError, RecursionError):
            return None  # a schema we cannot read is not the answer's fault
    if validator is None:
        validator = _package_validator(schema)
        _SCHEMAS[key] = (covered, validator)
    return _validate_with_package(instance, validator) if validator is not False else None


def _covered(schema: Any, depth: int = 0) -> bool:
    """Whether the small validator implements every keyword `schema` uses (conservatively: a property
    named like a keyword also sends the schema to the package)."""
    if depth > 64:
        return False
    if isinstance(schema, Mapping):
        if _UNCOVERED.intersection(schema) or isinstance(schema.get("items"), list):
            return False
        return all(_covered(value, depth + 1) for value in schema.values())
    if isinstance(schema, list):
        return all(_covered(value, depth + 1) for value in schema)
    return True


def _package_validator(schema: Mapping[str, Any]) -> Any:
    assert _jsonschema is not None
    try:
        cls = _jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        return cls(schema)
    except Exception:  # a broken schema (SchemaError, unknown $schema, bad $ref) is not the answer's fault
        return False


def _validate_with_package(instance: Any, validator: Any) -> SchemaProblem | None:
    assert _jsonschema is not None
    try:
        error = _jsonschema.exceptions.best_match(validator.iter_errors(instance))
    except Exception:  # an unresolvable $ref met during validation
        return None
    if error is None:
        return None
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return SchemaProblem(str(error.validator), path, error.message[:300])


def _validate_small(instance: Any, schema: Mapping[str, Any], path: str, depth: int) -> SchemaProblem | None:
    found = _check(instance, schema, depth)
    if found is None:
        return None
    keyword, parts, message = found
    return SchemaProblem(keyword, path + "".join(reversed(parts)), message)


def _check(instance: Any, schema: Mapping[str, Any], depth: int) -> tuple[str, list[str], str] | None:
    """(keyword, path parts innermost first, message) of the first violation; paths are built only for it."""
    if depth > 64:
        return None
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        known = [name for name in names if name in _TYPES]
        if known and not any(_TYPES[name](instance) for name in known):
            return "type", [], f"{_short(instance)} is not of type {' or '.join(known)}"
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(_same(instance, option) for option in enum):
        return "enum", [], f"{_short(instance)} is not one of {_short(enum)}"
    if "const" in schema and not _same(instance, schema["const"]):
        return "const", [], f"{_short(instance)} is not {_short(schema['const'])}"
    if type(instance) is dict:
        required = schema.get("required")
        if isinstance(required, list):
            for name in required:
                if isinstance(name, str) and name not in instance:
                    return "required", [], f"{name!r} is a required property"
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        extra = schema.get("additionalProperties")
        for name, value in instance.items():
            child = properties.get(name)
            if child is None:
                if extra is False:
                    return "additionalProperties", [], f"additional properties are not allowed ({name!r})"
                child = extra if isinstance(extra, dict) else None
            if isinstance(child, dict):
                found = _check(value, child, depth + 1)
                if found is not None:
                    found[1].append(f".{name}")
                    return found
    elif type(instance) is list:
        items = schema.get("items")
        if isinstance(items, dict):
            for index, value in enumerate(instance):
                found = _check(value, items, depth + 1)
                if found is not None:
                    found[1].append(f"[{index}]")
                    return found
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans apart from numbers."""
    if type(a) is str or type(b) is str:
        return a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return canonical_dumps(a) == canonical_dumps(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- what the request asked for ---------------------------------------------------------------------------


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


__all__ = [
    "JsonOutputEvaluator",
    "SchemaProblem",
    "canonical",
    "canonical_dumps",
    "judge_json",
    "requested_format",
    "strict_loads",
    "unfence",
    "validate_schema",
]
