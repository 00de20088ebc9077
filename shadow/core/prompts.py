"""What a request asked, as text: the `prompt` of a pair, and the binary parts a stored request leaves out.

`prompt_of` is the last user turn's text; in a tool loop (the request ends with tool results after that
turn) it adds one line naming the tool results it follows, so a reader can tell "what is the weather in
Paris" asked fresh from the same words three tool calls later. Images and other binary parts never
become prompt text.

`binary_placeholders` replaces inline images, audio and files (base64, `data:` URLs) in a request with a
typed placeholder — kind, media type, decoded size, SHA-256 — so a vision request does not store
megabytes of base64, and the same image is still recognisable across pairs.

>>> prompt_of({"messages": [{"role": "user", "content": "weather in Paris?"},
...     {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather"}}]},
...     {"role": "tool", "tool_call_id": "c1", "content": "18C"}]})
'weather in Paris?\\n[after 1 tool result: get_weather]'
>>> binary_placeholders({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
{'type': 'image_url', 'image_url': {'url': '[image/png, 8 bytes, sha256 4c4b6a3b]'}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*(?P<b64>;base64)?,", re.ASCII)
BINARY_KEYS = frozenset({"data", "file_data", "b64_json", "image_base64"})
"""Keys whose value is raw base64 in OpenAI request parts (`input_audio.data`, `file.file_data`, ...)."""
MIN_BINARY_CHARS = 256
"""Shorter base64 strings under those keys are left alone: nothing to save, and they may not be binary."""


def prompt_of(request: Mapping[str, Any]) -> str:
    """The last user turn's text (chat, Responses), or the prompt (completions); '' when there is none."""
    messages = request.get("messages")
    if isinstance(messages, list):
        return _last_user_turn(messages)
    items = request.get("input")
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        return _last_user_turn(items)
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


def content_text(content: Any) -> str:
    """Message content is a string or a list of typed parts; keep the text parts (chat `text`, Responses
    `input_text` / `output_text`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def _last_user_turn(items: list[Any]) -> str:
    names_by_call: dict[str, str] = {}
    results_after: list[str] = []
    last: Mapping[str, Any] | None = None
    for item in items:
        if not isinstance(item, Mapping):
            continue
        role, kind = item.get("role"), item.get("type")
        if role == "user" and kind in (None, "message"):
            results_after = []
            last = item
        for call in item.get("tool_calls") or []:  # chat: the assistant's calls, for the results' names
            if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
                names_by_call[str(call.get("id"))] = str(call["function"].get("name") or "?")
        if kind == "function_call":  # Responses: a call item
            names_by_call[str(item.get("call_id"))] = str(item.get("name") or "?")
        if role == "tool":
            results_after.append(
                names_by_call.get(str(item.get("tool_call_id")), str(item.get("name") or "?"))
            )
        elif kind == "function_call_output":
            results_after.append(names_by_call.get(str(item.get("call_id")), "?"))
    text = content_text(last.get("content")) if last is not None else ""
    if results_after:
        count = len(results_after)
        text += f"\n[after {count} tool result{'s' if count > 1 else ''}: {', '.join(dict.fromkeys(results_after))}]"
    return text


def follows_tool_results(request: Mapping[str, Any]) -> bool:
    """Whether the request's last turn is a tool result (the model is answering after calling tools)."""
    items = request.get("messages") if isinstance(request.get("messages"), list) else request.get("input")
    if not isinstance(items, list) or not items or not isinstance(items[-1], Mapping):
        return False
    return items[-1].get("role") == "tool" or items[-1].get("type") == "function_call_output"


def binary_placeholders(value: Any, depth: int = 0) -> Any:
    """`value` with inline binary data replaced by placeholders (a new object; the input is not changed)."""
    if depth > 64:
        return value
    if isinstance(value, str):
        return _data_url_placeholder(value) or value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key in BINARY_KEYS and isinstance(item, str) and len(item) >= MIN_BINARY_CHARS:
                # `file_data` is a data URL in OpenAI's API; `input_audio.data` raw base64.
                out[key] = _data_url_placeholder(item) or _base64_placeholder(item, _media_type(value))
            else:
                out[key] = binary_placeholders(item, depth + 1)
        return out
    if isinstance(value, list):
        return [binary_placeholders(item, depth + 1) for item in value]
    return value


def _data_url_placeholder(text: str) -> str | None:
    match = _DATA_URL.match(text)
    if match is None:
        return None
    payload = text[match.end() :]
    media = match.group("type") or "application/octet-stream"
    if match.group("b64"):
        return _base64_placeholder(payload, media)
    data = payload.encode("utf-8", "surrogatepass")
    return f"[{media}, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:8]}]"


def _base64_placeholder(payload: str, media: str) -> str:
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        data = payload.encode("utf-8", "surrogatepass")
    return f"[{media}, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:8]}]"


def _media_type(part: Mapping[str, Any]) -> str:
    kind = part.get("format") or part.get("mime_type") or part.get("media_type")
    if isinstance(kind, str) and kind:
        return kind if "/" in kind else f"audio/{kind}"
    return "application/octet-stream"


__all__ = ["binary_placeholders", "content_text", "follows_tool_results", "prompt_of"]
