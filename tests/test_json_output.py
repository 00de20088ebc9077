"""The json evaluator: JSON-mode answers that do not parse, are fenced, or break their schema.

Only requests that ask for JSON are judged (chat `response_format`, Responses `text.format`). A fenced
answer is invalid (a strict client's ``json.loads`` fails on it) and is marked `fenced`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evaluators.json_rules as json_rules
from evaluators.base import ScoringContext, SideText
from evaluators.json_output import JsonOutputEvaluator, requested_format
from evaluators.json_rules import validate_schema
from shadow.cli import main

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "kind": {"enum": ["person", "robot"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
JSON_OBJECT = {"response_format": {"type": "json_object"}}
CHAT_SCHEMA = {
    "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA, "strict": True}}
}
RESPONSES_SCHEMA = {"text": {"format": {"type": "json_schema", "name": "p", "schema": SCHEMA}}}


def score(text: str | None, request: dict | None, **side) -> dict:
    item = SideText(text, request=request, **side)
    return JsonOutputEvaluator().score_sides([item], ScoringContext())[0]


def test_which_requests_ask_for_json() -> None:
    assert requested_format(JSON_OBJECT) == ("json_object", None)
    assert requested_format(CHAT_SCHEMA) == ("json_schema", SCHEMA)
    assert requested_format(RESPONSES_SCHEMA) == ("json_schema", SCHEMA)
    assert requested_format({"text": {"format": {"type": "json_object"}}}) == ("json_object", None)
    assert requested_format({"response_format": {"type": "text"}}) is None
    assert requested_format({"messages": []}) is None and requested_format(None) is None


def test_a_request_without_json_mode_is_not_applicable() -> None:
    assert score('{"a": 1}', {"messages": []}) == {"applicable": False, "has_schema": False}
    assert score("not json", None)["applicable"] is False


def test_valid_and_invalid_json() -> None:
    valid = score(' {"name": "Ada", "age": 36}\n', JSON_OBJECT)
    assert valid["applicable"] and not valid["invalid"] and not valid["fenced"] and valid["problem"] is None
    assert not valid["has_schema"] and not valid["schema_invalid"]
    broken = score('{"name": "Ada", "age": 36', JSON_OBJECT)
    assert broken["invalid"] and broken["problem"] == "not JSON" and "line 1" in broken["error"]
    assert score("{'name': 'Ada'}", JSON_OBJECT)["invalid"]  # Python, not JSON
    assert score('{"x": NaN}', JSON_OBJECT)["invalid"]  # json.loads accepts NaN; JSON does not
    assert score("Sure! Here it is: {}", JSON_OBJECT)["invalid"]
    assert score("", JSON_OBJECT)["problem"] == "empty answer"
    cut = score('{"name": "Ada", "tags": ["a", "b', JSON_OBJECT, finish_reason="length")
    assert cut["invalid"] and cut["problem"] == "cut off at the length limit"


def test_a_fenced_answer_is_invalid_and_marked_fenced() -> None:
    for text in ('```json\n{"name": "Ada", "age": 36}\n```', '\n```\n{"name": "Ada", "age": 36}\n```\n'):
        result = score(text, CHAT_SCHEMA)
        assert result["invalid"] and result["fenced"] and result["problem"] == "fenced in ```json"
        assert not result["schema_invalid"]  # the content is right; the fence is what is wrong
    two_fences = '```json\n{"a": 1}\n```\n\n```json\n{"b": 2}\n```'
    assert score(two_fences, JSON_OBJECT)["fenced"] is False


@pytest.mark.parametrize("request_body", [CHAT_SCHEMA, RESPONSES_SCHEMA], ids=["chat", "responses"])
def test_schema_violations(request_body: dict) -> None:
    fine = score('{"name": "Ada", "age": 36, "tags": ["x"], "kind": "person"}', request_body)
    assert fine["has_schema"] and not fine["schema_invalid"] and not fine["invalid"]
    for text, problem in (
        ('{"name": "Ada"}', "schema: 'required' at $"),
        ('{"name": "Ada", "age": "36"}', "schema: 'type' at $.age"),
        ('{"name": "Ada", "age": 36, "tags": [1]}', "schema: 'type' at $.tags[0]"),
        ('{"name": "Ada", "age": 36, "kind": "cat"}', "schema: 'enum' at $.kind"),
        ('{"name": "Ada", "age": 36, "x": 1}', "schema: 'additionalProperties' at $"),
    ):
        result = score(text, request_body)
        assert result["schema_invalid"] and not result["invalid"] and result["problem"] == problem, text
    assert score("oops", request_body)["schema_invalid"]  # unparseable is not what the schema asked for


@pytest.mark.parametrize("use_package", [True, False], ids=["jsonschema", "small-validator"])
def test_both_validators_agree_on_the_common_keywords(use_package: bool) -> None:
    if use_package and json_rules._jsonschema is None:
        pytest.skip("jsonschema is not installed")
    cases = [
        ({"name": "Ada", "age": 36}, None),
        ({"name": "Ada", "age": 36.0}, None),  # a whole number is an integer
        ({"name": "Ada", "age": True}, ("type", "$.age")),  # a boolean is not
        ({"age": 1}, ("required", "$")),
        ({"name": "Ada", "age": 1, "kind": "cat"}, ("enum", "$.kind")),
        ([1, 2], ("type", "$")),
    ]
    for instance, expected in cases:
        found = validate_schema(instance, SCHEMA, use_package=use_package)
        assert (None if found is None else (found.keyword, found.path)) == expected, instance
    assert (
        validate_schema({"a": 1}, {"type": "no-such-type"}, use_package=use_package) is None
    )  # broken schema


def test_a_refusal_or_a_tool_call_instead_of_json_is_not_applicable() -> None:
    assert score(None, JSON_OBJECT, refusal="I can't help with that.")["applicable"] is False
    call = ({"id": "1", "type": "function", "name": "f", "arguments": "{}"},)
    assert score("", JSON_OBJECT, tool_calls=call)["applicable"] is False
    assert score(None, JSON_OBJECT)["invalid"] is True  # answered, but with nothing


def test_score_texts_without_a_request_is_not_applicable() -> None:
    results = JsonOutputEvaluator().score_texts(['{"a": 1}', "x"], [None, None], ScoringContext())
    assert [r["applicable"] for r in results] == [False, False]


def test_the_gate_names_the_most_common_problem(tmp_path: Path, capsys) -> None:
    pairs, scores = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    with open(pairs, "w", encoding="utf-8") as handle:
        for i in range(150):
            answer = json.dumps({"name": f"user {i}", "age": 20 + i % 50})
            candidate = f"```json\n{answer}\n```" if i % 5 == 0 else answer  # 20 % fenced
            obj = {
                "id": f"01JSON{i:020d}",
                "experiment": "json-mode",
                "created_at": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}Z",
                "request": {"messages": [{"role": "user", "content": f"user {i} as JSON"}], **CHAT_SCHEMA},
                "baseline": answer,
                "baseline_status": 200,
                "candidate": candidate,
                "candidate_status": 200,
            }
            handle.write(json.dumps(obj) + "\n")
    assert (
        main(["score", "--input", str(pairs), "--output", str(scores), "--evaluators", "json,refusal"]) == 0
    )
    capsys.readouterr()
    main(["gate", "--input", str(scores), "--json"])
    gate = json.loads(capsys.readouterr().out)
    checks = {check["name"]: check for check in gate["checks"]}
    invalid = checks["invalid_json"]
    assert invalid["verdict"] == "fail" and invalid["critical"], invalid
    assert invalid["candidate"]["rate"] == pytest.approx(0.2) and invalid["baseline"]["rate"] == 0.0
    assert "most often: fenced in ```json, 30x" in invalid["reason"]
    assert checks["json_schema_invalid"]["verdict"] == "pass"
    assert gate["verdict"] == "fail" and "invalid_json" in gate["reason"]
