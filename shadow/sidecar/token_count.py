"""How many tokens a candidate call cost: what it reported, else an estimate from what was sent and said.

A streamed candidate that reports no usage (an upstream that ignores `stream_options.include_usage`) must
still count against `budget_candidate_tokens_per_hour`, or streaming traffic — most chat UIs stream —
escapes the budget. The estimate is deliberately simple and errs high rather than low: one token per Han,
kana or Hangul character, and one per four other characters (OpenAI's rule of thumb for English).

>>> reported_tokens({"prompt_tokens": 12, "completion_tokens": 30}), reported_tokens({"input_tokens": 5})
(42, 5)
>>> estimate_tokens("hello world, hello"), estimate_tokens("你好世界")
(5, 4)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from shadow.core.prompts import BINARY_KEYS, MIN_BINARY_CHARS

_WIDE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_REQUEST_TEXT_KEYS = ("messages", "input", "prompt", "instructions", "tools")


def reported_tokens(usage: Mapping[str, Any] | None) -> int | None:
    """Total tokens from a chat / completions (`prompt_tokens`, `completion_tokens`, `total_tokens`) or
    Responses (`input_tokens`, `output_tokens`, `total_tokens`) usage object; None when it has none."""
    if not isinstance(usage, Mapping):
        return None
    total = usage.get("total_tokens")
    if _count(total):
        return int(total)
    parts = [
        usage.get(key) for key in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    counted = [int(p) for p in parts if _count(p)]
    return sum(counted) if counted else None


def estimate_tokens(text: str) -> int:
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)


def estimated_call_tokens(request: Mapping[str, Any], output_texts: list[str | None]) -> int:
    """The request's text (messages, input, prompt, instructions, tool schemas; not inline binary data)
    plus everything the answer said."""
    sent = sum(estimate_tokens(text) for key in _REQUEST_TEXT_KEYS for text in _strings(request.get(key)))
    said = sum(estimate_tokens(text) for text in output_texts if text)
    return sent + said


def candidate_tokens(usage: Mapping[str, Any] | None, request: Mapping[str, Any], side: Any) -> int:
    """Reported usage when there is one, else the estimate from `side` (a `SideOutput`)."""
    reported = reported_tokens(usage)
    if reported is not None:
        return reported
    texts: list[str | None] = [side.text, side.refusal, side.reasoning]
    texts += [call.get("name") for call in side.tool_calls or []]
    texts += [call.get("arguments") for call in side.tool_calls or []]
    for choice in side.choices or []:
        texts += [choice.get("text"), choice.get("refusal"), choice.get("reasoning")]
        texts += [call.get("arguments") for call in choice.get("tool_calls") or []]
    if not any(texts) and side.error:
        return 0  # nothing came back: nothing to count beyond what the candidate may not even have read
    return estimated_call_tokens(request, [t if isinstance(t, str) else None for t in texts])


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 20:
        return
    if isinstance(value, str):
        if not value.startswith("data:"):  # inline images and files are not text tokens
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key in BINARY_KEYS and isinstance(item, str) and len(item) >= MIN_BINARY_CHARS:
                continue  # raw base64 (`input_audio.data`): not text tokens either
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


__all__ = ["candidate_tokens", "estimate_tokens", "estimated_call_tokens", "reported_tokens"]
