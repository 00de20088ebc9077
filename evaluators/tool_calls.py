"""Tool calls: does the candidate call the same functions with the same arguments as the primary?

Pairwise, and only where it applies: when neither side made a tool call the result is None (not a match,
not a mismatch), so plain chat traffic costs nothing and does not dilute the rates. The runner also scores
the primary against its own rerun (the secondary), which gives the noise floor: a primary that varies its
arguments from run to run is not held against the candidate.

Calls are compared as a multiset, so the order of parallel calls does not matter, and ids never do. Two calls
are the same when their function names are equal and their arguments are equal as JSON values: parsed,
then compared with sorted keys, whitespace and Unicode escapes ignored, numbers by value (``1 == 1.0``,
``true != 1``). Arguments that are not valid JSON are compared as stripped strings.

Outputs (per pair, for the candidate or, in the noise section, for the secondary):

- `mismatch`: the calls differ in any way (the main check, against the noise floor);
- `function_mismatch`: the function names differ as a multiset (a missing, extra or other call);
- `argument_mismatch`: a function both sides called got other arguments;
- `call_vs_text`: one side called a tool, the other answered without one;
- `invalid_arguments`: a call's arguments are not valid JSON, or the function's JSON schema from the
  request's ``tools`` (chat ``function.parameters``, Responses ``parameters``, legacy ``functions``)
  rejects them (`evaluators.json_rules.validate_schema`); `unknown_function`: it called a function the
  request did not offer;
- `argument_problem`: the first invalid call without the values ("get_weather: arguments are not valid
  JSON", "get_weather: arguments violate the schema ('required' at $)");
- `difference`: the first difference without the values, for counting ("get_weather: argument 'unit'
  differs", "called search_flights instead of get_weather", "answered in text instead of calling
  get_weather"); `detail`: the same with the values, for people; `differing_arguments`: every differing
  argument as ``function.path`` (nested keys dotted, list items as ``[i]``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext, TextPair
from evaluators.json_rules import canonical_dumps, strict_loads, validate_schema


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call, read: its arguments parsed when they are JSON, and the key two equal calls share."""

    name: str
    arguments: str
    valid: bool
    value: Any
    key: str

    @classmethod
    def read(cls, call: Mapping[str, Any]) -> Call:
        name = call.get("name")
        arguments = call.get("arguments")
        if not isinstance(arguments, str):  # a hand-written file may carry the parsed object
            arguments = "" if arguments is None else json.dumps(arguments, ensure_ascii=False)
        valid, value, _ = strict_loads(arguments, by_value=True)
        if valid:
            key = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return cls(str(name or ""), arguments, True, value, key)
        return cls(str(name or ""), arguments, False, None, "\x00" + arguments.strip())

    @property
    def label(self) -> str:
        return self.name or "an unnamed function"


def read_calls(calls: Sequence[Mapping[str, Any]] | None) -> list[Call]:
    return [Call.read(call) for call in calls or () if isinstance(call, Mapping)]


# --- schemas from the request -------------------------------------------------------------------------------


def offered_functions(request: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """(``{name: parameters schema or None}``, closed) for the functions the request offers: chat ``tools``
    (``{"type": "function", "function": {...}}``), Responses ``tools`` (``{"type": "function", "name",
    "parameters"}``) and legacy ``functions``. `closed` is True when the request lists its tools and every one
    is a named function, so a call to another name is a call to a function it did not offer."""
    offered: dict[str, Any] = {}
    closed = False
    if not isinstance(request, Mapping):
        return offered, closed
    for key in ("tools", "functions"):
        items = request.get(key)
        if not isinstance(items, list) or not items:
            continue
        closed = True
        for item in items:
            inner = item.get("function") if isinstance(item, Mapping) else None
            function = inner if isinstance(inner, Mapping) else item
            name = function.get("name") if isinstance(function, Mapping) else None
            if not isinstance(name, str) or item.get("type") not in (None, "function"):
                closed = False  # a built-in or custom tool (web_search, ...): other names may be fine
                if not isinstance(name, str):
                    continue
            parameters = function.get("parameters")
            offered[name] = parameters if isinstance(parameters, Mapping) else None
    return offered, closed


def argument_problem(call: Call, offered: Mapping[str, Any]) -> tuple[str, str] | None:
    """(value-free difference, detail) when the call's arguments are invalid, else None."""
    if not call.valid:
        what = "are empty" if not call.arguments.strip() else "are not valid JSON"
        return f"{call.label}: arguments {what}", f"{call.label}: arguments {what} ({_clip(call.arguments)})"
    schema = offered.get(call.name)
    if schema is None:
        return None
    found = validate_schema(call.value, schema)
    if found is None:
        return None
    return (
        f"{call.label}: arguments violate the schema ({found.problem.removeprefix('schema: ')})",
        f"{call.label}: arguments violate the schema at {found.path}: {found.message}",
    )


# --- comparing two sides ------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def differing_paths(a: Any, b: Any, path: str = "") -> list[tuple[str, str, Any, Any]]:
    """(path, how, value in a, value in b) for each place two canonical JSON values differ; `how` is
    "differs", "missing" (only in a) or "added" (only in b).

    >>> differing_paths({"unit": "c", "loc": {"city": "Paris"}}, {"unit": "c", "loc": {"city": "Lyon"}})
    [('loc.city', 'differs', 'Paris', 'Lyon')]
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, str, Any, Any]] = []
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append((where, "missing", a[key], None))
            elif key not in a:
                out.append((where, "added", None, b[key]))
            else:
                out.extend(differing_paths(a[key], b[key], where))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(differing_paths(x, y, f"{path}[{index}]"))
        return out
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return [] if canonical_dumps(a) == canonical_dumps(b) else [(path, "differs", a, b)]
    return [] if _same(a, b) else [(path, "differs", a, b)]


def _argument_texts(reference: Call, candidate: Call) -> tuple[str, str, list[str]]:
    """(difference, detail, differing argument paths) of two calls of the same function."""
    name = reference.label
    if not (reference.valid and candidate.valid):
        side = "the primary's" if not reference.valid else "its"
        if not candidate.valid and not reference.valid:
            side = "both sides'"
        difference = f"{name}: {side} arguments are not valid JSON"
        return (
            difference,
            f"{difference} ({_clip(reference.arguments)} vs {_clip(candidate.arguments)})",
            [name],
        )
    paths = differing_paths(reference.value, candidate.value)
    if not paths or paths == [("", "differs", reference.value, candidate.value)]:
        difference = f"{name}: arguments differ"
        return (
            difference,
            f"{difference} ({_clip(reference.arguments)} vs {_clip(candidate.arguments)})",
            [name],
        )
    where, how, before, after = paths[0]
    if len(paths) > 1:
        names = ", ".join(f"'{p[0]}'" for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        difference = f"{name}: arguments {names} differ"
    else:
        difference = f"{name}: argument '{where}' {how}"
    if how == "missing":
        values = f"was {_value(before)}"
    elif how == "added":
        values = _value(after)
    else:
        values = f"{_value(before)} vs {_value(after)}"
    if len(paths) > 1:
        values = f"'{where}': {values}, ..."
    return difference, f"{difference} ({values})", [f"{name}.{p[0]}" if p[0] else name for p in paths]


def _names(calls: Sequence[Call]) -> str:
    unique = list(dict.fromkeys(call.label for call in calls))
    return ", ".join(unique[:3]) + (", ..." if len(unique) > 3 else "")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _clip(f"'{value}'")
    return _clip(json.dumps(value, ensure_ascii=False))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_calls(
    reference_calls: Sequence[Mapping[str, Any]] | None,
    candidate_calls: Sequence[Mapping[str, Any]] | None,
    *,
    candidate_text: str | None = None,
    candidate_refusal: str | None = None,
    request: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The result object for one comparison (module docstring), or None when neither side called a tool.

    >>> r = compare_calls([{"name": "f", "arguments": '{"a": 1}'}], [{"name": "f", "arguments": '{"a":1.0}'}])
    >>> r["mismatch"], r["difference"]
    (False, None)
    """
    reference, candidate = read_calls(reference_calls), read_calls(candidate_calls)
    if not reference and not candidate:
        return None
    # Exact matches first, as a multiset: the order of parallel calls is free.
    waiting: dict[tuple[str, str], list[Call]] = {}
    for call in candidate:
        waiting.setdefault((call.name, call.key), []).append(call)
    matched: Counter[tuple[str, str]] = Counter()
    reference_rest = []
    for call in reference:
        if len(waiting.get((call.name, call.key), ())) > matched[(call.name, call.key)]:
            matched[(call.name, call.key)] += 1
        else:
            reference_rest.append(call)
    candidate_rest = []
    for call in candidate:  # in the candidate's order
        if matched[(call.name, call.key)] > 0:
            matched[(call.name, call.key)] -= 1
        else:
            candidate_rest.append(call)
    # What is left of the same function on both sides: the arguments differ. Pair the closest calls.
    paired: list[tuple[Call, Call]] = []
    unmatched_reference: list[Call] = []
    free = list(candidate_rest)
    for call in reference_rest:
        options = [other for other in free if other.name == call.name]
        if not options:
            unmatched_reference.append(call)
            continue
        best = min(options, key=lambda other: _distance(call, other))
        free.remove(best)
        paired.append((call, best))
    function_mismatch = Counter(c.name for c in reference) != Counter(c.name for c in candidate)
    call_vs_text = bool(reference) != bool(candidate)
    offered, closed = offered_functions(request)
    problems = [p for p in (argument_problem(call, offered) for call in candidate) if p is not None]
    unknown = [call for call in candidate if closed and call.name not in offered]

    difference = detail = None
    arguments: list[str] = []
    if call_vs_text and reference:
        if (candidate_text or "").strip():
            how = "answered in text"
        elif candidate_refusal:
            how = "refused"
        else:
            how = "made no tool call"
        difference = f"{how} instead of calling {_names(reference)}"
    elif call_vs_text:
        difference = f"called {_names(candidate)} instead of answering in text"
    elif unmatched_reference and free:
        difference = f"called {_names(free)} instead of {_names(unmatched_reference)}"
    elif unmatched_reference:
        difference = f"did not call {_names(unmatched_reference)}"
    elif free:
        difference = f"also called {_names(free)}"
    if paired:
        first_difference, first_detail, arguments = _argument_texts(*paired[0])
        for pair in paired[1:]:
            arguments.extend(_argument_texts(*pair)[2])
        if difference is None:
            difference, detail = first_difference, first_detail
    if difference is not None and detail is None:
        detail = difference
    if difference is None and problems:
        difference, detail = problems[0]
    elif difference is None and unknown:
        difference = detail = f"called {unknown[0].label}, which the request does not offer"
    return {
        "mismatch": bool(reference_rest or candidate_rest),
        "function_mismatch": function_mismatch,
        "argument_mismatch": bool(paired),
        "call_vs_text": call_vs_text,
        "invalid_arguments": bool(problems),
        "argument_problem": problems[0][0] if problems else None,
        "unknown_function": bool(unknown),
        "reference_calls": len(reference),
        "candidate_calls": len(candidate),
        "differing_arguments": arguments,
        "difference": difference,
        "detail": detail,
    }


def _distance(a: Call, b: Call) -> int:
    if not (a.valid and b.valid):
        return 1_000
    return len(differing_paths(a.value, b.value))


class ToolCallEvaluator(Evaluator):
    """Pairwise: the candidate's tool calls against the primary's (module docstring)."""

    name: ClassVar[str] = "tools"
    version: ClassVar[str] = "1.0"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "mismatch"
    pairwise: ClassVar[bool] = True
    needs_text: ClassVar[bool] = False
    outputs: ClassVar[tuple[Output, ...]] = (
        Output(
            "mismatch",
            "tool-call mismatch rate",
            kind="flag",
            noise_floor=True,
            event="calls other tools or arguments than the primary",
            # Effect: candidate mismatch rate - the primary's against its own reruns (pairs with a tool
            # call on either side); without enough secondaries, the candidate's rate against 5 %. Not
            # required: traffic without tool calls has nothing to judge and must not hold the verdict.
            check=GateCheck(
                "tool_call_mismatch",
                critical=True,
                required=False,
                tolerance=0.05,
                absolute_threshold=0.05,
                skip_unscored=True,
            ),
            severity=(0.05, 0.15),
            badness=0.6,
            detail="difference",
        ),
        Output("function_mismatch", "other functions called", kind="flag", noise_floor=True),
        Output("argument_mismatch", "other arguments", kind="flag", noise_floor=True),
        Output("call_vs_text", "call answered in text (or text with a call)", kind="flag", noise_floor=True),
        Output(
            "invalid_arguments",
            "invalid tool arguments rate",
            kind="flag",
            noise_floor=True,
            event="sends tool arguments that are not valid JSON or break the function's schema",
            check=GateCheck(
                "tool_arguments_invalid",
                required=False,
                tolerance=0.02,
                absolute_threshold=0.02,
                skip_unscored=True,
            ),
            severity=(0.02, 0.05),
            badness=0.4,
            detail="argument_problem",
        ),
        Output("unknown_function", "calls to functions not offered", kind="flag", noise_floor=True),
    )

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any] | None]:
        return [
            compare_calls(
                pair.reference_tool_calls,
                pair.candidate_tool_calls,
                candidate_text=pair.candidate,
                candidate_refusal=pair.candidate_refusal,
                request=pair.request,
            )
            for pair in pairs
        ]


__all__ = [
    "Call",
    "ToolCallEvaluator",
    "argument_problem",
    "compare_calls",
    "differing_paths",
    "offered_functions",
    "read_calls",
]
