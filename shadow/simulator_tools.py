"""The simulator's tool calls: deciding from the prompt and the offered JSON schemas whether to call and
what, building plausible arguments, the `tool_behaviour`s that get calls wrong the ways candidates do,
JSON-mode answers, and the follow-up that quotes tool results.

Apart from `shadow/simulator.py` because reading schemas and prompts for arguments is a job of its own.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from shadow.simulator_model import Ask, Call, SimulatedModel, Tool, fraction, is_chinese

_SUBJECTS = {
    "weather": ("weather", "forecast", "temperature", "rain", "sunny", "天气", "气温"),
    "forecast": ("weather", "forecast", "天气"),
    "temperature": ("temperature", "weather", "气温"),
    "flight": ("flight", "fly ", "plane", "airport", "航班", "机票"),
    "search": ("search", "look up", "find", "google", "搜索", "查找"),
    "web": ("search the web", "online", "web"),
    "calculate": ("calculate", "compute", "multiply", "divide", "plus", "times", "sum of", "计算"),
    "calculator": ("calculate", "compute", "multiply", "divide", "plus", "times", "计算"),
    "math": ("calculate", "compute", "math", "计算"),
    "stock": ("stock", "share price", "ticker", "股价"),
    "price": ("price", "cost", "价格"),
    "email": ("email", "e-mail", "mail ", "邮件"),
    "time": ("time in", "what time", "时间"),
    "news": ("news", "headline", "新闻"),
    "translate": ("translate", "翻译"),
    "hotel": ("hotel", "stay", "酒店"),
    "book": ("book ", "reserve", "预订"),
    "convert": ("convert", "exchange rate", "换算"),
}
_GENERIC_HINTS = ("weather", "forecast", "flight", "search", "look up", "calculate", "compute",
                  "天气", "航班", "搜索", "计算")  # fmt: skip
"""A prompt with one of these needs a tool even when it names none of the tools offered."""
_NAME_NOISE = {"get", "set", "fetch", "do", "run", "call", "tool", "api", "the", "current", "lookup", "query"}
_NOT_PLACES = {
    "What", "Whats", "What's", "The", "Is", "Are", "How", "Please", "Can", "Could", "Would", "Tell", "Should",
    "And", "In", "On", "For", "Book", "Find", "Search", "Calculate", "Compute", "Look", "Show", "Give", "Get",
    "I", "I'm", "My", "Me", "Will", "Do", "Does", "Which", "When", "Where", "Who", "Why", "It", "Then", "Also",
    "Check", "Send", "Convert", "Translate", "Hi", "Hello", "Thanks", "Use", "Let", "Now", "Today",
    "Tomorrow", "Weather", "Flight", "Flights", "From", "To", "Between", "With", "After", "Before",
}  # fmt: skip
_ZH_PLACES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "东京", "巴黎", "伦敦", "纽约")
_PLACE_WORDS = (
    "location", "city", "place", "destination", "origin", "from", "to", "departure", "arrival",
    "address", "region", "country", "where", "town",
)  # fmt: skip
_QUERY_WORDS = ("query", "q", "search", "question", "prompt", "topic", "keywords", "term", "text", "input")
_WRONG_PLACES = ("Springfield", "Atlantis", "Gotham")


def planned_calls(model: SimulatedModel, ask: Ask, digest: str, choice: int) -> list[Call]:
    if not ask.tools or ask.tool_choice == "none":
        return []
    lowered = ask.prompt.lower()
    matched = [tool for tool in ask.tools if _tool_matches(tool, lowered)]
    rank = fraction(model, ask.prompt, "tool")
    if ask.tool_choice and ask.tool_choice.startswith("function:"):
        name = ask.tool_choice.partition(":")[2]
        chosen = [next((t for t in ask.tools if t.name == name), Tool(name, {}))]
    elif matched:
        chosen = matched
    elif ask.tool_choice == "required" or any(hint in lowered for hint in _GENERIC_HINTS):
        chosen = [ask.tools[int(rank * len(ask.tools))]]
    else:
        return []
    places = _places(ask.prompt)
    # (tool, the place this call is about): two tools named, or one tool asked about two places.
    if len(chosen) >= 2 and ask.parallel:
        planned = [(chosen[0], 0), (chosen[1], 0)]
    elif len(places) >= 2 and ask.parallel and _place_parameters(chosen[0]) == 1:
        planned = [(chosen[0], 0), (chosen[0], 1)]
    else:
        planned = [(chosen[0], 0)]
    behaviour = model.tool_behaviour
    if behaviour != "right" and fraction(model, ask.prompt, "tool-error") >= model.tool_error_share:
        behaviour = "right"
    if behaviour == "text_instead":
        return []
    values = _Values(model.seed, ask.prompt, places)
    calls = []
    for number, (tool, place) in enumerate(planned):
        name = tool.name
        if behaviour == "wrong_function":
            others = [t for t in ask.tools if t.name != tool.name]
            tool = others[number % len(others)] if others else Tool(f"{tool.name}_v2", tool.parameters)
            name = tool.name
        arguments = values.call(tool.parameters, place)
        if behaviour == "wrong_arguments":
            arguments = _wrong(arguments, tool.parameters)
        if behaviour == "reorder_and_reformat":
            text = json.dumps(_reformatted(arguments), ensure_ascii=False, indent=2)
        else:
            text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        call_id = "call_" + hashlib.sha256(f"{digest}:{choice}:{number}".encode()).hexdigest()[:24]
        calls.append(Call(call_id, name, text))
    if behaviour == "reorder_and_reformat":
        calls.reverse()
    return calls


def _tool_matches(tool: Tool, lowered_prompt: str) -> bool:
    words = [w.lower() for w in re.split(r"[_\-.\s]+|(?<=[a-z])(?=[A-Z])", tool.name) if w]
    for word in words:
        if word in _NAME_NOISE or len(word) < 3:
            continue
        stem = word[:-1] if word.endswith("s") and len(word) > 3 else word
        if stem in lowered_prompt or any(hint in lowered_prompt for hint in _SUBJECTS.get(stem, ())):
            return True
    return False


def _place_parameters(tool: Tool) -> int:
    """How many parameters name a place: one (a city) makes a call per place named; two (origin and
    destination) take both places in one call."""
    properties = tool.parameters.get("properties")
    return sum(_is_place(str(name)) for name in properties) if isinstance(properties, dict) else 0


def _is_place(name: str) -> bool:
    lowered = name.lower()
    return any(word == lowered or lowered.startswith(word + "_") or lowered.endswith("_" + word)
               for word in _PLACE_WORDS)  # fmt: skip


def _places(prompt: str) -> list[str]:
    """Capitalised names in the prompt ("Paris", "New York"), and known Chinese city names. A sentence's
    first word is capitalised anyway ("Compare ..."): it counts only when the prompt names nothing else."""
    inside: list[str] = []
    first: list[str] = []
    for match in re.finditer(r"\b[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*", prompt):
        words = match.group(0).split()
        initial = re.search(r"(?:^|[.!?;:]\s*|\n\s*)$", prompt[: match.start()]) is not None
        if initial and len(words) > 1:
            words, initial = words[1:], False
        words = [w for w in words if w.strip("'’") not in _NOT_PLACES]
        if words:
            (first if initial else inside).append(" ".join(words))
    found = (inside or first) + [city for city in _ZH_PLACES if city in prompt]
    return list(dict.fromkeys(found))


class _Values:
    """Plausible argument values for a JSON schema, taken from the prompt where it has them."""

    def __init__(self, seed: int, prompt: str, places: list[str]) -> None:
        self.prompt = prompt
        self.places = places
        self.chinese = is_chinese(prompt)
        undated = re.sub(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}", " ", prompt)
        self.numbers = re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?", undated)
        self.used = 0
        self.random = random.Random(f"args:{seed}:{prompt}")
        self.sentences: list[str] = []

    def call(self, schema: dict[str, Any], place: int = 0) -> dict[str, Any]:
        """The arguments of one call: numeric parameters take the prompt's numbers in order."""
        self.used = 0
        return self.object(schema, place)

    def object(self, schema: dict[str, Any], place: int = 0) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        required = schema.get("required")
        names = [n for n in properties if isinstance(required, list) and n in required] if required else []
        out: dict[str, Any] = {}
        for name in names or list(properties):
            spec = properties[name]
            out[name] = self.value(str(name), spec if isinstance(spec, dict) else {}, place)
        return out

    def value(self, name: str, schema: dict[str, Any], place: int = 0) -> Any:
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options and isinstance(options[0], dict):
                schema = {**schema, **next((o for o in options if o.get("type") != "null"), options[0])}
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            lowered = self.prompt.lower()
            return next((v for v in enum if isinstance(v, str) and v.lower() in lowered), enum[0])
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind is None:
            kind = "object" if isinstance(schema.get("properties"), dict) else "string"
        if kind == "object":
            return self.object(schema, place)
        if kind == "array":
            items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
            if _is_place(name.rstrip("s")) and len(self.places) > 1:
                return [self.value(name.rstrip("s"), items, i) for i in range(len(self.places))]
            return [self.value(name.rstrip("s"), items, place)]
        if kind == "integer":
            return int(float(self.number(name)))
        if kind == "number":
            number = float(self.number(name))
            return int(number) if number.is_integer() else number
        if kind == "boolean":
            return False
        return self.string(name, place)

    def number(self, name: str) -> str:
        if self.used < len(self.numbers):
            self.used += 1
            return self.numbers[self.used - 1]
        return str(
            1 + self.random.randrange(5) if "count" in name or "num" in name else 2 + self.random.randrange(9)
        )

    def string(self, name: str, place: int) -> str:
        lowered = name.lower()
        if _is_place(lowered):
            if lowered in ("to", "destination", "arrival") or lowered.endswith(("_to", "destination")):
                place = max(place, 1)
            if self.places:
                return self.places[min(place, len(self.places) - 1)]
            return ("北京", "上海")[place % 2] if self.chinese else ("Paris", "Lisbon")[place % 2]
        if "date" in lowered or lowered == "day":
            found = re.search(r"\d{4}-\d{2}-\d{2}", self.prompt)
            return (
                found.group(0)
                if found
                else f"2025-{1 + self.random.randrange(12):02d}-{1 + self.random.randrange(28):02d}"
            )
        if "unit" in lowered:
            return "fahrenheit" if "fahrenheit" in self.prompt.lower() else "celsius"
        if "email" in lowered or lowered == "recipient":
            found = re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", self.prompt)
            return found.group(0) if found else "alex@example.com"
        if lowered in ("expression", "formula", "equation", "expr"):
            found = re.search(r"[\d.(]+(?:\s*[-+*/×x^%]\s*[\d.()]+)+", self.prompt)
            return found.group(0).strip() if found else "2 + 2"
        if lowered in ("symbol", "ticker"):
            found = re.search(r"\b[A-Z]{2,5}\b", self.prompt)
            return found.group(0) if found else "ACME"
        if lowered in ("currency", "from_currency", "to_currency"):
            return "USD" if "to" not in lowered else "EUR"
        if lowered in ("language", "lang", "target_language"):
            return "zh" if self.chinese else "en"
        if lowered in _QUERY_WORDS or lowered.endswith("_query"):
            return self.prompt.strip().rstrip("?？。.") or "query"
        if self.sentences:
            return self.sentences[0]
        words = self.prompt.split()
        return " ".join(words[:6]).rstrip("?？。.,") or "value"


def _wrong(arguments: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The same call with one value wrong and, when there are several, the last required argument missing."""
    out = dict(arguments)
    if not out:
        return {"input": "?"}
    first = next(iter(out))
    value = out[first]
    if isinstance(value, bool):
        out[first] = not value
    elif isinstance(value, (int, float)):
        out[first] = value * 10 + 1
    elif isinstance(value, str):
        out[first] = next(p for p in _WRONG_PLACES if p != value) if _is_place(first) else value[::-1] or "?"
    else:
        out[first] = None
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    present = [name for name in out if name in required]
    if len(present) > 1:
        del out[present[-1]]
    return out


def _reformatted(value: Any) -> Any:
    """Keys in the opposite order, and whole numbers written as floats (1 becomes 1.0)."""
    if isinstance(value, dict):
        return {key: _reformatted(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reformatted(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def json_answer(ask: Ask, sentences: list[str], digest: str) -> str:
    text = ("" if is_chinese(ask.prompt) else " ").join(sentences)
    schema = (ask.json_format or {}).get("schema")
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        values = _Values(int(digest[:6], 16), ask.prompt, _places(ask.prompt))
        values.sentences = [text]
        return json.dumps(values.call({**schema, "required": None}), ensure_ascii=False)
    return json.dumps({"answer": text, "confidence": 0.8}, ensure_ascii=False)


def quote_results(results: list[tuple[str, str]], chinese: bool) -> str:
    quoted = []
    for name, result in results:
        result = " ".join(result.split())
        result = result if len(result) <= 200 else result[:199] + "…"
        quoted.append(
            f"根据 {name} 的结果：{result}。" if chinese else f"The {name} tool returned: {result}."
        )
    return ("" if chinese else " ").join(quoted)
