"""JSON as a strict client reads it, one canonical form of a JSON value, and JSON-schema validation.

Shared by the `json` evaluator (is an answer the JSON its request asked for?) and the `tools` evaluator
(are two calls' arguments the same? do they fit the function's schema?), so both read JSON the same way.
Schemas are checked with the `jsonschema` package when it is importable (it comes with the `ray` extra);
otherwise with `validate_schema`'s own small validator (type, required, enum, const, properties, items,
additionalProperties), which is enough for the schemas function calling and structured outputs use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:  # optional: an exact validator when installed; the fallback below covers the common keywords
    import jsonschema as _jsonschema
except ImportError:  # pragma: no cover - depends on the environment
    _jsonschema = None


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


__all__ = ["SchemaProblem", "canonical", "canonical_dumps", "strict_loads", "validate_schema"]
