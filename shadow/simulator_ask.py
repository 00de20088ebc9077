"""Reading a request once: the last user turn, tools, `tool_choice`, tool results, JSON mode, `n` and
the token budget of a chat, completions or Responses body, as an `Ask` that every route plans from.

Apart from `shadow/simulator.py` because reading the three wire formats is one job, answering another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shadow.simulator_model import Ask, Tool


def user_text(payload: dict[str, Any], route: str = "chat") -> str:
    """The last user turn's text: chat `messages`, Responses `input`, or the completions `prompt`."""
    messages = payload.get("messages")
    if isinstance(messages, list) and route != "responses":
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"), ("text",))
        return ""
    items = payload.get("input") if route == "responses" else None
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        for item in reversed(items):
            if (
                isinstance(item, dict)
                and item.get("role") == "user"
                and item.get("type") in (None, "message")
            ):
                return _text_of(item.get("content"), ("input_text", "text"))
        return ""
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


def _text_of(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") in kinds
        )
    return ""


def read_ask(payload: dict[str, Any], route: str) -> Ask:
    tools: list[Tool] = []
    raw_tools = payload.get("tools")
    for raw in raw_tools if isinstance(raw_tools, list) else []:
        if not isinstance(raw, dict) or raw.get("type", "function") != "function":
            continue
        spec = raw.get("function") if isinstance(raw.get("function"), dict) else raw  # chat / Responses
        name = spec.get("name")
        if isinstance(name, str) and name:
            parameters = spec.get("parameters")
            tools.append(Tool(name, parameters if isinstance(parameters, dict) else {}))
    choice = payload.get("tool_choice")
    tool_choice: str | None = None
    if isinstance(choice, str):
        tool_choice = choice
    elif isinstance(choice, dict):
        named = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        if isinstance(named.get("name"), str):
            tool_choice = f"function:{named['name']}"
    items = payload.get("messages") if route != "responses" else payload.get("input")
    tool_results = _tool_results(items if isinstance(items, list) else [])
    if route == "responses":
        text = payload.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        json_format = _json_format(fmt, fmt)
        max_tokens = payload.get("max_output_tokens")
    else:
        fmt = payload.get("response_format")
        json_format = _json_format(fmt, fmt.get("json_schema") if isinstance(fmt, dict) else None)
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    n = payload.get("n") if route != "responses" else 1
    return Ask(
        route=route,
        prompt=user_text(payload, route),
        tools=tools,
        tool_choice=tool_choice,
        parallel=payload.get("parallel_tool_calls") is not False,
        tool_results=tool_results,
        json_format=json_format,
        max_tokens=int(max_tokens or 512),
        n=n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 16 else 1,
        all_text="".join(_strings([payload.get(k) for k in ("messages", "input", "instructions", "tools")])),
    )


def _json_format(fmt: Any, schema_holder: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = schema_holder.get("schema") if isinstance(schema_holder, dict) else None
        return {"type": "json_schema", "schema": schema if isinstance(schema, dict) else {}}
    return None


def _tool_results(items: list[Any]) -> list[tuple[str, str]]:
    names: dict[str, str] = {}
    results: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("role") == "user" and item.get("type") in (None, "message"):
            results = []
        calls = item.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name") or "tool")
        if item.get("type") == "function_call":
            names[str(item.get("call_id"))] = str(item.get("name") or "tool")
        if item.get("role") == "tool":
            name = names.get(str(item.get("tool_call_id")), str(item.get("name") or "tool"))
            results.append((name, _text_of(item.get("content"), ("text",))))
        elif item.get("type") == "function_call_output":
            output = item.get("output")
            results.append((names.get(str(item.get("call_id")), "tool"), _text_of(output, ("input_text",))))
    return results


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if not value.startswith("data:"):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
