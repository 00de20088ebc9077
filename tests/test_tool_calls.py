"""The tools evaluator: the candidate's tool calls against the primary's, and what the runner gives it.

Unit tests on plain data (the same calls written differently match; a wrong function, argument or a call
answered in text is named), then a known-truth experiment through `shadow score` and `shadow gate`: 200
agent pairs where the candidate (a) makes the same calls with other formatting and order, (b) sends wrong
arguments in 30 % of pairs, (c) answers 30 % of calls in text, (d) refuses 10 % more often.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import evaluators.json_rules as json_rules
from evaluators.registry import load_evaluators
from evaluators.runner import ScoreRunner, score_lines
from evaluators.tool_calls import ToolCallEvaluator, compare_calls, differing_paths
from shadow.cli import main

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city"],
    "additionalProperties": False,
}
FLIGHTS = {
    "type": "object",
    "properties": {
        "origin": {"type": "string"},
        "destination": {"type": "string"},
        "filters": {"type": "object", "properties": {"max_price": {"type": "number"}}},
    },
    "required": ["origin", "destination"],
}
CHAT_TOOLS = {
    "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
        {"type": "function", "function": {"name": "search_flights", "parameters": FLIGHTS}},
    ]
}
RESPONSES_TOOLS = {
    "tools": [
        {"type": "function", "name": "get_weather", "parameters": WEATHER},
        {"type": "function", "name": "search_flights", "parameters": FLIGHTS},
    ]
}


def call(name: str, arguments: str | dict, call_id: str | None = "call_1") -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "name": name, "arguments": text}


def compare(reference: list[dict], candidate: list[dict], **kwargs: Any) -> dict[str, Any]:
    result = compare_calls(reference, candidate, **kwargs)
    assert result is not None
    return result


# --- the same calls, written differently ---------------------------------------------------------------------


def test_the_same_calls_in_another_notation_and_order_match() -> None:
    reference = [
        call("get_weather", '{"city": "Zürich", "unit": "celsius", "days": 3}', "a"),
        call("search_flights", '{"origin":"ZRH","destination":"NRT","filters":{"max_price":500}}', "b"),
    ]
    candidate = [  # parallel calls in the other order, other ids, key order, whitespace, 500.0, \u escapes
        call(
            "search_flights",
            '{\n  "filters": {"max_price": 500.0},\n  "destination": "NRT", "origin": "ZRH"}',
            "x",
        ),
        call("get_weather", '{"days":3.0,"unit":"celsius","city":"Z\\u00fcrich"}', "y"),
    ]
    result = compare(reference, candidate, request=CHAT_TOOLS)
    assert result["mismatch"] is False and result["difference"] is None and result["detail"] is None
    assert not any(result[k] for k in ("function_mismatch", "argument_mismatch", "call_vs_text"))
    assert result["invalid_arguments"] is False and result["unknown_function"] is False
    assert result["reference_calls"] == result["candidate_calls"] == 2


def test_true_is_not_one_and_a_string_is_not_a_number() -> None:
    assert differing_paths({"a": True, "b": "1"}, {"a": 1, "b": 1}) == [
        ("a", "differs", True, 1),
        ("b", "differs", "1", 1),
    ]
    assert differing_paths({"a": 1, "b": [1, 2.5]}, {"a": 1.0, "b": [1.0, 2.5]}) == []


def test_neither_side_calling_is_not_applicable() -> None:
    assert compare_calls(None, None) is None
    assert compare_calls([], None) is None


# --- differences, named --------------------------------------------------------------------------------------


def test_a_wrong_argument_is_named_with_its_values() -> None:
    result = compare(
        [call("get_weather", {"city": "Paris", "unit": "celsius"})],
        [call("get_weather", {"city": "Paris", "unit": "fahrenheit"})],
    )
    assert result["mismatch"] and result["argument_mismatch"] and not result["function_mismatch"]
    assert result["difference"] == "get_weather: argument 'unit' differs"
    assert result["detail"] == "get_weather: argument 'unit' differs ('celsius' vs 'fahrenheit')"
    assert result["differing_arguments"] == ["get_weather.unit"]


def test_nested_missing_and_added_arguments_are_dotted_paths() -> None:
    nested = compare(
        [call("search_flights", {"origin": "A", "destination": "B", "filters": {"max_price": 500}})],
        [call("search_flights", {"origin": "A", "destination": "B", "filters": {"max_price": 900}})],
    )
    assert nested["difference"] == "search_flights: argument 'filters.max_price' differs"
    assert nested["detail"].endswith("differs (500 vs 900)")
    missing = compare(
        [call("get_weather", {"city": "Paris", "unit": "celsius"})], [call("get_weather", {"city": "Paris"})]
    )
    assert missing["difference"] == "get_weather: argument 'unit' missing"
    added = compare(
        [call("get_weather", {"city": "Paris"})], [call("get_weather", {"city": "Paris", "days": 2})]
    )
    assert added["difference"] == "get_weather: argument 'days' added"
    several = compare(
        [call("get_weather", {"city": "Paris", "unit": "c"})],
        [call("get_weather", {"city": "Rome", "unit": "f"})],
    )
    assert several["difference"] == "get_weather: arguments 'city', 'unit' differ"
    assert several["detail"].endswith("differ ('city': 'Paris' vs 'Rome', ...)")
    assert several["differing_arguments"] == ["get_weather.city", "get_weather.unit"]
    assert missing["detail"] == "get_weather: argument 'unit' missing (was 'celsius')"


def test_another_function_a_missing_call_and_an_extra_call() -> None:
    other = compare(
        [call("get_weather", {"city": "Paris"})],
        [call("search_flights", {"origin": "A", "destination": "B"})],
    )
    assert other["function_mismatch"] and other["mismatch"] and not other["argument_mismatch"]
    assert other["difference"] == "called search_flights instead of get_weather"
    weather = call("get_weather", {"city": "Paris"})
    fewer = compare([weather, weather], [weather])
    assert fewer["function_mismatch"] and fewer["difference"] == "did not call get_weather"
    more = compare([weather], [weather, call("search_flights", {"origin": "A", "destination": "B"})])
    assert more["difference"] == "also called search_flights"


def test_a_call_answered_in_text_and_text_answered_with_a_call() -> None:
    in_text = compare([call("get_weather", {"city": "Paris"})], [], candidate_text="It is sunny in Paris.")
    assert in_text["call_vs_text"] and in_text["function_mismatch"] and in_text["mismatch"]
    assert in_text["difference"] == "answered in text instead of calling get_weather"
    refused = compare([call("get_weather", {"city": "Paris"})], [], candidate_refusal="I can't.")
    assert refused["difference"] == "refused instead of calling get_weather"
    nothing = compare([call("get_weather", {"city": "Paris"})], None, candidate_text="")
    assert nothing["difference"] == "made no tool call instead of calling get_weather"
    called = compare([], [call("get_weather", {"city": "Paris"})])
    assert (
        called["call_vs_text"] and called["difference"] == "called get_weather instead of answering in text"
    )


def test_invalid_json_arguments() -> None:
    result = compare([call("get_weather", {"city": "Paris"})], [call("get_weather", '{"city": "Paris"')])
    assert result["invalid_arguments"] and result["mismatch"] and result["argument_mismatch"]
    assert result["argument_problem"] == "get_weather: arguments are not valid JSON"
    assert result["difference"] == "get_weather: its arguments are not valid JSON"
    empty = compare([call("get_weather", "{}")], [call("get_weather", "")])
    assert empty["argument_problem"] == "get_weather: arguments are empty"
    nan = compare([call("get_weather", '{"days": 1}')], [call("get_weather", '{"days": NaN}')])
    assert nan["invalid_arguments"]  # NaN is what Python's json reads, not JSON
    both_bad = compare([call("f", "{oops")], [call("f", " {oops ")])
    assert not both_bad["mismatch"] and both_bad["invalid_arguments"]  # same string; still invalid


@pytest.mark.parametrize("package", [True, False], ids=["jsonschema", "small-validator"])
@pytest.mark.parametrize("request_tools", [CHAT_TOOLS, RESPONSES_TOOLS], ids=["chat", "responses"])
def test_schema_violations_from_the_requests_tools(monkeypatch, package: bool, request_tools: dict) -> None:
    if not package:
        monkeypatch.setattr(json_rules, "_jsonschema", None)
    elif json_rules._jsonschema is None:
        pytest.skip("jsonschema is not installed")
    same = [call("get_weather", {"city": "Paris", "unit": "kelvin"})]
    result = compare(same, same, request=request_tools)
    assert not result["mismatch"] and result["invalid_arguments"]  # the primary sent it too: no mismatch
    assert result["argument_problem"] == "get_weather: arguments violate the schema ('enum' at $.unit)"
    assert result["difference"] == result["argument_problem"]
    for arguments, keyword in (
        ({"unit": "celsius"}, "'required' at $"),
        ({"city": 7}, "'type' at $.city"),
        ({"city": "Paris", "days": 1.5}, "'type' at $.days"),
        ({"city": "Paris", "wind": True}, "'additionalProperties' at $"),
    ):
        found = compare(same, [call("get_weather", arguments)], request=request_tools)
        assert found["invalid_arguments"] and found["argument_problem"].endswith(f"({keyword})"), arguments
    fine = compare(same, [call("get_weather", {"city": "Paris", "days": 2.0})], request=request_tools)
    assert not fine["invalid_arguments"]  # 2.0 is an integer by value


def test_a_function_the_request_did_not_offer() -> None:
    result = compare(
        [call("get_weather", {"city": "Paris"})], [call("get_wether", {"city": "Paris"})], request=CHAT_TOOLS
    )
    assert result["unknown_function"] and result["function_mismatch"]
    open_tools = {"tools": [*CHAT_TOOLS["tools"], {"type": "web_search"}]}
    assert not compare([], [call("anything", {})], request=open_tools)["unknown_function"]


# --- through the runner ------------------------------------------------------------------------------------


def agent_pair(pair_id: str, baseline_calls, candidate_calls, *, secondary_calls=None, **extra) -> dict:
    obj: dict[str, Any] = {
        "id": pair_id,
        "experiment": "agents",
        "created_at": "2026-11-01T10:00:00Z",
        "request": {"messages": [{"role": "user", "content": "weather in Paris?"}], **CHAT_TOOLS},
        "baseline": None if baseline_calls else "It is sunny.",
        "baseline_status": 200,
        "baseline_finish_reason": "tool_calls" if baseline_calls else "stop",
        "candidate": None if candidate_calls else "It is sunny.",
        "candidate_status": 200,
        "candidate_finish_reason": "tool_calls" if candidate_calls else "stop",
    }
    if baseline_calls:
        obj["baseline_tool_calls"] = baseline_calls
    if candidate_calls:
        obj["candidate_tool_calls"] = candidate_calls
    if secondary_calls is not None:
        obj |= {"secondary": None, "secondary_status": 200, "secondary_tool_calls": secondary_calls}
    obj.update(extra)
    return obj


def score(objs: list[dict], names: str) -> list[dict]:
    runner = ScoreRunner(load_evaluators(names))
    return [json.loads(line) for line in score_lines([json.dumps(o) for o in objs], runner)]


def test_the_runner_gives_tool_calls_and_text_evaluators_abstain() -> None:
    weather = [call("get_weather", {"city": "Paris", "unit": "celsius"})]
    other = [call("get_weather", {"city": "Paris", "unit": "fahrenheit"})]
    out = score(
        [
            agent_pair("p1", weather, other, secondary_calls=weather),
            agent_pair("p2", weather, weather, baseline="", candidate="  "),  # empty content beside calls
            agent_pair("p3", None, None),  # plain text
            agent_pair("p4", None, None, baseline="", candidate=""),  # two empty answers
            agent_pair("p5", None, None, candidate=""),  # an empty answer against a real one
        ],
        "tools,length,loop",
    )
    assert out[0]["tools"]["difference"] == "get_weather: argument 'unit' differs"
    assert out[0]["noise"]["tools"]["mismatch"] is False
    assert out[0]["length"] is None and out[0]["noise"]["length"] is None  # tool-only: no text to compare
    assert out[0]["loop"] == {"baseline": None, "candidate": None, "secondary": None}
    assert out[1]["tools"]["mismatch"] is False and out[1]["length"] is None
    assert out[1]["loop"]["candidate"] is None
    assert out[2]["tools"] is None and out[2]["length"]["log_ratio"] == 0.0  # not applicable; text scored
    assert out[3]["length"] is None  # two empty texts are not a perfect match
    assert out[3]["loop"]["candidate"] is not None  # an empty answer without calls is still a text
    assert out[4]["length"]["candidate_units"] == 0
    assert out[0]["scored_by"]["tools"] == ToolCallEvaluator.version


def test_the_same_calls_under_different_tool_schemas_are_not_merged() -> None:
    strict = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"required": ["x"]}}}]}
    loose = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    calls = [call("f", {})]
    objs = [agent_pair("p1", calls, calls, request=strict), agent_pair("p2", calls, calls, request=loose)]
    out = score(objs, "tools")
    assert out[0]["tools"]["invalid_arguments"] is True and out[1]["tools"]["invalid_arguments"] is False


# --- the known-truth experiment ----------------------------------------------------------------------------

PAIRS = 200
CITIES = ["Paris", "Zürich", "東京", "São Paulo", "Reykjavík", "Berlin", "北京", "Lima"]


def _reformat(arguments: dict[str, Any], rng: random.Random) -> str:
    """The same JSON value in another notation: keys reversed, spaces, whole floats, \\u escapes."""
    items = list(arguments.items())[::-1]
    widened = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in items}
    return json.dumps(widened, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))


def write_agent_pairs(path: Path, scenario: str, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(PAIRS):
            city = CITIES[i % len(CITIES)]
            weather = {"city": city, "unit": rng.choice(["celsius", "fahrenheit"]), "days": rng.randint(1, 5)}
            flights = {"origin": "ZRH", "destination": city[:3].upper(), "filters": {"max_price": 400 + i}}
            calls = [("get_weather", weather)] + ([("search_flights", flights)] if i % 3 == 0 else [])
            baseline = [
                call(name, json.dumps(args, separators=(",", ":")), f"b{n}")
                for n, (name, args) in enumerate(calls)
            ]
            # The candidate sends the same calls in another notation and, for parallel calls, another order.
            candidate = [call(name, _reformat(args, rng), f"c{n}") for n, (name, args) in enumerate(calls)][
                ::-1
            ]
            candidate_text: str | None = None
            candidate_refusal: str | None = None
            wrong = rng.random() < 0.30
            if scenario == "wrong_arguments" and wrong:
                flipped = dict(weather, unit="fahrenheit" if weather["unit"] == "celsius" else "celsius")
                candidate = [
                    c if c["name"] != "get_weather" else call("get_weather", json.dumps(flipped))
                    for c in candidate
                ]
            if scenario == "wrong_function" and wrong:
                candidate = [
                    c if c["name"] != "get_weather" else call("get_forecast", c["arguments"])
                    for c in candidate
                ]
            if scenario == "text_instead" and wrong:
                candidate, candidate_text = [], f"The weather in {city} will be mild for the next days."
            if scenario == "refuses" and rng.random() < 0.10:
                candidate = []
                if rng.random() < 0.5:
                    candidate_refusal = "I can't help with that request."
                else:
                    candidate_text = rng.choice(
                        ["I'm sorry, but I can't help with that.", "抱歉，我无法提供该信息。"]
                    )
            pair: dict[str, Any] = {
                "id": f"01AGENT{i:019d}",
                "experiment": f"agents-{scenario}",
                "created_at": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}Z",
                "request": {
                    "model": "m",
                    "messages": [{"role": "user", "content": f"Weather and flights for {city}?"}],
                    **CHAT_TOOLS,
                },
                "baseline": None,
                "baseline_status": 200,
                "baseline_finish_reason": "tool_calls",
                "baseline_tool_calls": baseline,
                "candidate": candidate_text,
                "candidate_status": 200,
                "candidate_finish_reason": "tool_calls" if candidate else "stop",
            }
            if candidate:
                pair["candidate_tool_calls"] = candidate
            if candidate_refusal:
                pair["candidate_refusal"] = candidate_refusal
            if i % 5 < 2:  # 40 % have a secondary: the primary's rerun, now and then with another unit
                rerun = dict(weather, unit="celsius") if i % 25 == 0 else weather
                pair |= {
                    "secondary": None,
                    "secondary_status": 200,
                    "secondary_finish_reason": "tool_calls",
                    "secondary_tool_calls": [call("get_weather", json.dumps(rerun))] + baseline[1:],
                }
            handle.write(json.dumps(pair, ensure_ascii=False) + "\n")


def run_gate(tmp_path: Path, scenario: str, capsys) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    pairs, scores = tmp_path / f"{scenario}.jsonl", tmp_path / f"{scenario}.scores.jsonl"
    write_agent_pairs(pairs, scenario)
    evaluators = "tools,refusal,json,semantic,length,loop"  # the text ones abstain on tool-only turns
    assert main(["score", "--input", str(pairs), "--output", str(scores), "--evaluators", evaluators]) == 0
    capsys.readouterr()
    main(["gate", "--input", str(scores), "--json"])
    gate = json.loads(capsys.readouterr().out)
    return gate, {check["name"]: check for check in gate["checks"]}


def test_known_truth_same_calls_reformatted_pass(tmp_path, capsys) -> None:
    gate, checks = run_gate(tmp_path, "same", capsys)
    mismatch = checks["tool_call_mismatch"]
    assert mismatch["verdict"] == "pass" and mismatch["candidate"]["rate"] == 0.0, mismatch
    assert mismatch["noise"]["n"] == 80  # judged against the primary's own reruns
    assert checks["tool_arguments_invalid"]["verdict"] == "pass"
    assert checks["refusal_rate"]["verdict"] == "pass"
    # Tool-only answers have no text: the text checks abstain (no data), they never count as agreement.
    assert checks["length_ratio"]["verdict"] == "nodata" and checks["loop_rate"]["verdict"] == "nodata"
    # ... and since they had nothing to judge on any answer, they do not hold the verdict back.
    assert not checks["length_ratio"]["required"] and "nothing to judge" in checks["length_ratio"]["reason"]
    assert "invalid_json" not in checks  # no request asked for JSON: the check is left out
    assert gate["verdict"] == "pass", gate["reason"]


def test_known_truth_wrong_functions_fail(tmp_path, capsys) -> None:
    gate, checks = run_gate(tmp_path, "wrong_function", capsys)
    mismatch = checks["tool_call_mismatch"]
    assert mismatch["verdict"] == "fail" and 0.2 < mismatch["candidate"]["rate"] < 0.4, mismatch
    assert "get_forecast" in mismatch["reason"] and "get_weather" in mismatch["reason"], mismatch["reason"]
    assert gate["verdict"] == "fail" and "tool_call_mismatch" in gate["reason"]


def test_known_truth_wrong_arguments_fail_naming_the_argument(tmp_path, capsys) -> None:
    gate, checks = run_gate(tmp_path, "wrong_arguments", capsys)
    mismatch = checks["tool_call_mismatch"]
    assert mismatch["verdict"] == "fail" and 0.2 < mismatch["candidate"]["rate"] < 0.4, mismatch
    assert "most often: get_weather: argument 'unit' differs" in mismatch["reason"]
    assert gate["verdict"] == "fail" and "tool_call_mismatch" in gate["reason"]


def test_known_truth_calls_answered_in_text_fail(tmp_path, capsys) -> None:
    gate, checks = run_gate(tmp_path, "text_instead", capsys)
    mismatch = checks["tool_call_mismatch"]
    assert mismatch["verdict"] == "fail", mismatch
    assert "most often: answered in text instead of calling get_weather" in mismatch["reason"]
    assert gate["verdict"] == "fail" and "tool_call_mismatch" in gate["reason"]


def test_known_truth_more_refusals_fail(tmp_path, capsys) -> None:
    gate, checks = run_gate(tmp_path, "refuses", capsys)
    refusals = checks["refusal_rate"]
    assert refusals["verdict"] == "fail" and refusals["critical"], refusals
    assert refusals["reason"].startswith("Candidate refuses in ")
    assert gate["verdict"] == "fail" and "refusal_rate" in gate["reason"]
