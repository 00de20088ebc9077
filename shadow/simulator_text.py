"""The simulator's text: the phrase book answers are assembled from, refusals, reasoning, truncation and
loops, and the chat and completions documents and streams that carry them.

Apart from `shadow/simulator.py` so that what is said lives apart from serving and tool calls.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

from shadow.simulator_model import Ask, SimulatedModel, Turn, argument_pieces, is_chinese, split_pieces

_ZH_SENTENCES = (
    "首先，我们需要明确问题的核心。",
    "从数据来看，这一趋势在过去几年里相当稳定。",
    "其次，要考虑成本与收益之间的平衡。",
    "在实际操作中，建议先做小规模试点。",
    "如果试点效果良好，再逐步扩大范围。",
    "同时，应当建立清晰的监控指标。",
    "最后，定期复盘可以帮助团队持续改进。",
    "总的来说，这个方案是可行的，但需要耐心。",
)
_EN_SENTENCES = (
    "First, it helps to state the core of the problem clearly.",
    "The data suggest the trend has been stable for several years.",
    "Second, weigh the costs against the expected benefits.",
    "In practice, start with a small pilot before committing.",
    "If the pilot works, widen the scope step by step.",
    "Meanwhile, define clear metrics and watch them closely.",
    "Finally, regular reviews help the team keep improving.",
    "Overall, the plan is workable, but it needs patience.",
)
REFUSALS = {
    "en": "I'm sorry, but I can't help with that request.",
    "zh": "抱歉，我无法协助处理这个请求。",
}


def compose_answer(model: SimulatedModel, prompt: str, call_number: int, salt: str = "") -> list[str]:
    """The answer as a list of sentences; deterministic in (prompt, seed, salt) apart from `variation`.

    `salt` tells apart answers to the same prompt that must differ (the choices of an `n` > 1 request)."""
    chinese = is_chinese(prompt)
    book = _ZH_SENTENCES if chinese else _EN_SENTENCES
    key = f"{model.seed}:{prompt}" if not salt else f"{model.seed}:{prompt}:{salt}"
    digest = hashlib.sha256(key.encode()).digest()
    start = digest[0] % len(book)
    count = model.sentences + digest[1] % 3
    if model.behaviour == "verbose":
        count = round(count * 1.4) + 1
    sentences = [book[(start + i) % len(book)] for i in range(count)]
    noise = random.Random(f"{key}:{call_number}")
    for i in range(len(sentences)):
        if noise.random() < model.variation:
            sentences[i] = book[noise.randrange(len(book))]
    return sentences


def reasoning_text(model: SimulatedModel, ask: Ask) -> str:
    question = " ".join(ask.prompt.split())
    question = question if len(question) <= 80 else question[:79] + "…"
    if is_chinese(ask.prompt):
        steps = [f"用户的问题是：“{question}”。", "先想清楚对方真正需要什么。"]
        if ask.tool_results:
            steps.append("工具已经返回了结果，据此回答即可。")
        elif ask.tools:
            steps.append("看看可用的工具能否提供所需的数据。")
        steps.append("我会分几步清楚地回答。")
        return "".join(steps)
    steps = [f"The user asks: “{question}”.", "Let me work out what they actually need."]
    if ask.tool_results:
        steps.append("The tool results are in; the answer should rest on them.")
    elif ask.tools:
        steps.append("One of the tools may provide the data this needs.")
    digest = hashlib.sha256(f"reason:{model.seed}:{ask.prompt}".encode()).digest()
    steps.append(
        ("I will answer in a few clear steps.", "A short, structured answer fits best.")[digest[0] % 2]
    )
    return " ".join(steps)


def render_text(sentences: list[str], behaviour: str, max_tokens: int) -> tuple[str, str]:
    text = "".join(sentences) if "。" in sentences[0] else " ".join(sentences)
    if behaviour == "loop":
        # A degenerate tail as small models produce under greedy decoding: one sentence until the budget ends.
        tail = sentences[-1] if "。" in sentences[-1] else " " + sentences[-1]
        while len(split_pieces(text)) < max_tokens:
            text += tail
        return "".join(split_pieces(text)[:max_tokens]), "length"
    pieces = split_pieces(text)
    if len(pieces) > max_tokens:
        return "".join(pieces[:max_tokens]), "length"
    return text, "stop"


def chat_choice(route: str, index: int, turn: Turn, plain: bool) -> dict[str, Any]:
    if route == "completions":
        return {
            "index": index,
            "text": turn.text or "",
            "logprobs": None,
            "finish_reason": turn.finish_reason,
        }
    message: dict[str, Any] = {"role": "assistant", "content": turn.text}
    if not plain:
        message["refusal"] = turn.refusal
        if turn.reasoning is not None:
            message["reasoning_content"] = turn.reasoning
        if turn.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in turn.calls
            ]
    return {"index": index, "message": message, "finish_reason": turn.finish_reason}


def chat_events(
    model: SimulatedModel,
    route: str,
    response_id: str,
    created: int,
    turns: list[tuple[Turn, bool]],
    usage: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    obj = "text_completion" if route == "completions" else "chat.completion.chunk"

    def event(choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": obj,
            "created": created,
            "model": model.name,
            "choices": [choice],
        }

    per_choice = [list(_choice_chunks(route, i, turn)) for i, (turn, _plain) in enumerate(turns)]
    events = [event(chunk) for chunk in _interleave(per_choice)]
    if usage is not None:
        events.append(
            {
                "id": response_id,
                "object": obj,
                "created": created,
                "model": model.name,
                "choices": [],
                "usage": usage,
            }
        )
    return events


def _choice_chunks(route: str, index: int, turn: Turn) -> Iterator[dict[str, Any]]:
    """One choice's stream chunks (`choices[]` entries), its finish last."""

    def delta(content: dict[str, Any]) -> dict[str, Any]:
        return {"index": index, "delta": content, "finish_reason": None}

    if route == "completions":
        for piece in split_pieces(turn.text or ""):
            yield {"index": index, "text": piece, "logprobs": None, "finish_reason": None}
        yield {"index": index, "finish_reason": turn.finish_reason, "text": "", "logprobs": None}
        return
    if turn.text is not None and not turn.calls:
        yield delta({"role": "assistant", "content": ""})
    else:
        yield delta({"role": "assistant", "content": None})
    if turn.reasoning:
        for piece in split_pieces(turn.reasoning):
            yield delta({"reasoning_content": piece})
    if turn.refusal is not None:
        for piece in split_pieces(turn.refusal):
            yield delta({"refusal": piece})
    if turn.calls:
        per_call = []
        for number, call in enumerate(turn.calls):
            head = {
                "index": number,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            tail = [{"index": number, "function": {"arguments": p}} for p in argument_pieces(call.arguments)]
            per_call.append([head, *tail])
        for entry in _interleave(per_call):
            yield delta({"tool_calls": [entry]})
    elif turn.text is not None:
        for piece in split_pieces(turn.text):
            yield delta({"content": piece})
    yield {"index": index, "finish_reason": turn.finish_reason, "delta": {}}


def _interleave(lists: list[list[Any]]) -> Iterator[Any]:
    """Round robin: the first of each list, then the second of each, ...; one list is itself."""
    for row in range(max((len(items) for items in lists), default=0)):
        for items in lists:
            if row < len(items):
                yield items[row]
