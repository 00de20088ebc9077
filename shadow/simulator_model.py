"""The simulator's shared shapes: the model's settings, a request read once (`Ask`), one choice's answer
(`Turn`), and the small helpers every part of `shadow/simulator.py` uses (token pieces, prompt hashing).

A module of its own so that the parts (text, tools, Responses) share these without importing each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

HARMFUL_MARKERS = (
    "bomb",
    "explosive",
    "malware",
    "ransomware",
    "nerve agent",
    "bioweapon",
    "steal a car",
    "炸弹",
    "恶意软件",
)
"""Prompts containing one of these are refused when `SimulatedModel.refuse_harmful` is set."""


@dataclass(frozen=True, slots=True)
class SimulatedModel:
    name: str = "sim-primary"
    behaviour: str = "normal"
    first_byte_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    slice_bytes: int | None = None
    """Write streams in slices of this many bytes, splitting SSE lines and UTF-8 characters on purpose."""
    variation: float = 0.0
    """Chance that a sentence is swapped for another: how much two calls with the same prompt differ."""
    sentences: int = 4
    seed: int = 0
    loop_share: float = 0.0
    """Share of prompts (chosen by prompt hash, so reproducible) answered with a degenerate loop."""
    tool_behaviour: str = "right"
    """How prompts that call tools are answered: "right" (the calls the prompt needs), "wrong_arguments"
    (the same function, a wrong value and a required argument missing), "wrong_function" (another tool,
    or a made-up name when there is only one), "text_instead" (a text answer, no call), or
    "reorder_and_reformat" (the same calls and values, arguments with other key order, whitespace and
    number format, parallel calls in the opposite order)."""
    tool_error_share: float = 1.0
    """Share of the calling prompts (by prompt hash) that get `tool_behaviour`; the others get "right"."""
    refusal_share: float = 0.0
    """Share of prompts (by prompt hash) refused with a `refusal` instead of an answer."""
    refuse_harmful: bool = False
    """Refuse prompts that contain one of `HARMFUL_MARKERS`."""
    reasoning: bool = False
    """Think aloud first: `reasoning_content` in chat, a `reasoning` item with a summary in Responses."""
    report_usage: bool = True
    """False: never report usage (no `usage` in answers, `stream_options.include_usage` ignored), as some
    self-hosted servers do."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class Ask:
    """A request, read once: what every route's answer is planned from."""

    route: str
    prompt: str
    """The last user turn's text: what the answer's sentences are derived from."""
    tools: list[Tool]
    tool_choice: str | None
    """None, "auto", "none", "required", or "function:<name>"."""
    parallel: bool
    tool_results: list[tuple[str, str]]
    """(tool name, result text) of the tool results after the last user turn."""
    json_format: dict[str, Any] | None
    """{"type": "json_object"} or {"type": "json_schema", "schema": {...}}: the answer must be JSON."""
    max_tokens: int
    n: int
    all_text: str
    """Every text the request carries (messages, tools), for an honest prompt token count."""

    @property
    def plain(self) -> bool:
        """No agent feature asked for: the answer is exactly what the simulator always said."""
        return not self.tools and not self.tool_results and self.json_format is None and self.n == 1


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Turn:
    """One choice of an answer."""

    text: str | None = None
    calls: list[Call] = field(default_factory=list)
    refusal: str | None = None
    reasoning: str | None = None
    finish_reason: str = "stop"

    def tokens(self) -> int:
        count = len(split_pieces(self.text)) if self.text is not None else 0
        count += len(split_pieces(self.refusal)) if self.refusal is not None else 0
        count += sum(len(split_pieces(c.name + c.arguments)) for c in self.calls)
        return count + self.reasoning_tokens()

    def reasoning_tokens(self) -> int:
        return len(split_pieces(self.reasoning)) if self.reasoning else 0


def split_pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def argument_pieces(text: str) -> list[str]:
    """Tool-call arguments cut into small pieces of uneven size (1 to 5 characters), as models stream them."""
    sizes = (1, 3, 2, 5, 4)
    pieces: list[str] = []
    at = 0
    while at < len(text):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(text[at : at + size])
        at += size
    return pieces or [""]


def fraction(model: SimulatedModel, prompt: str, kind: str) -> float:
    digest = hashlib.sha256(f"{kind}:{model.seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def is_chinese(text: str) -> bool:
    return sum("\u4e00" <= ch <= "\u9fff" for ch in text) > len(text) * 0.2
