"""The simulator's Responses API (`POST /v1/responses`): the `Response` document with its output items,
and the typed, numbered stream events the openai SDK reads.

Apart from `shadow/simulator.py` because the Responses wire format shares nothing with chat's but a `Turn`.
"""

from __future__ import annotations

from typing import Any

from shadow.simulator_model import Ask, SimulatedModel, Turn, argument_pieces, split_pieces


def response_document(
    model: SimulatedModel,
    payload: dict[str, Any],
    ask: Ask,
    turn: Turn,
    digest: str,
    created: int,
    usage: dict[str, Any],
) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        output.append(
            {
                "id": f"rs_{digest[:24]}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": turn.reasoning}],
            }
        )
    if turn.refusal is not None or (turn.text is not None and not turn.calls):
        part: dict[str, Any] = (
            {"type": "refusal", "refusal": turn.refusal}
            if turn.refusal is not None
            else {"type": "output_text", "annotations": [], "logprobs": [], "text": turn.text}
        )
        status = "incomplete" if turn.finish_reason == "length" else "completed"
        output.append(
            {
                "id": f"msg_{digest[:24]}",
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        )
    for number, call in enumerate(turn.calls):
        output.append(
            {
                "id": f"fc_{digest[:20]}{number:04d}",
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call.id,
                "name": call.name,
            }
        )
    truncated = turn.finish_reason == "length"
    text_config = (
        payload.get("text") if isinstance(payload.get("text"), dict) else {"format": {"type": "text"}}
    )
    return {
        "id": f"resp_{digest[:32]}",
        "object": "response",
        "created_at": created,
        "status": "incomplete" if truncated else "completed",
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": model.name,
        "output": output,
        "parallel_tool_calls": ask.parallel,
        "previous_response_id": payload.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": payload.get("store", True) is not False,
        "temperature": payload.get("temperature", 1.0),
        "text": text_config,
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage if model.report_usage else None,
        "user": payload.get("user"),
        "metadata": payload.get("metadata") or {},
    }


def response_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The typed events of a streamed Response, as the SDK's `ResponseStreamEvent`s, numbered in order."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    started = {**document, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(document["output"]):
        where = {"item_id": item["id"], "output_index": index}
        kind = item["type"]
        if kind == "reasoning":
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            for number, part in enumerate(item["summary"]):
                empty = {"type": "summary_text", "text": ""}
                emit("response.reasoning_summary_part.added", **where, summary_index=number, part=empty)
                for piece in split_pieces(part["text"]):
                    emit("response.reasoning_summary_text.delta", **where, summary_index=number, delta=piece)
                emit("response.reasoning_summary_text.done", **where, summary_index=number, text=part["text"])
                emit("response.reasoning_summary_part.done", **where, summary_index=number, part=part)
        elif kind == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for number, part in enumerate(item["content"]):
                at = {**where, "content_index": number}
                if part["type"] == "refusal":
                    emit("response.content_part.added", **at, part={"type": "refusal", "refusal": ""})
                    for piece in split_pieces(part["refusal"]):
                        emit("response.refusal.delta", **at, delta=piece)
                    emit("response.refusal.done", **at, refusal=part["refusal"])
                else:
                    emit("response.content_part.added", **at, part={**part, "text": ""})
                    for piece in split_pieces(part["text"]):
                        emit("response.output_text.delta", **at, delta=piece, logprobs=[])
                    emit("response.output_text.done", **at, text=part["text"], logprobs=[])
                emit("response.content_part.done", **at, part=part)
        elif kind == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in argument_pieces(item["arguments"]):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    final = "response.incomplete" if document["status"] == "incomplete" else "response.completed"
    emit(final, response=document)
    return events
