"""Which evaluators exist, by name, and how to build them without importing what is not needed.

The registry maps a short name to a ``"module:Class"`` path and imports a module only when its evaluator is
asked for, so ``shadow score --evaluators length,loop`` never imports torch. Adding an evaluator is one new
module plus one line in `EVALUATORS`.

A name that contains a colon is taken as a ``"module:Class"`` path itself, which lets a team try an
evaluator of its own (or a test use a fake one) without editing this file.

>>> parse_names("length, loop")
['length', 'loop']
>>> parse_names(None) == list(EVALUATORS)
True
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence

from evaluators.base import Evaluator
from shadow.core.errors import UsageError
from shadow.core.pairs import CORE_FIELDS, PART_FIELDS, SIDE_FIELDS, SIDES

EVALUATORS: dict[str, str] = {
    "semantic": "evaluators.semantic:SemanticEvaluator",
    "length": "evaluators.length:LengthEvaluator",
    "loop": "evaluators.loop:LoopEvaluator",
    "coherence": "evaluators.coherence:CoherenceEvaluator",
    "tools": "evaluators.tool_calls:ToolCallEvaluator",
    "refusal": "evaluators.refusal:RefusalEvaluator",
    "json": "evaluators.json_output:JsonOutputEvaluator",
}
"""Registered evaluators in their default order (the order of the output objects)."""


class UnknownEvaluatorError(UsageError, ValueError):
    """An evaluator name that is not registered; the message lists the known ones."""


def known_names() -> list[str]:
    return list(EVALUATORS)


def parse_names(spec: str | Iterable[str] | None) -> list[str]:
    """Turn ``"semantic,length"`` (or a list of names) into a checked list without duplicates.

    `None` or an empty spec means every registered evaluator, in registry order.
    """
    if spec is None:
        return known_names()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        name = item.strip()
        if not name or name in names:
            continue
        if name not in EVALUATORS and ":" not in name:
            raise UnknownEvaluatorError(
                f"unknown evaluator {name!r}; known evaluators: {', '.join(EVALUATORS)}"
                " (or give a module:Class path)"
            )
        names.append(name)
    return names or known_names()


def load_evaluator_class(name: str) -> type[Evaluator]:
    """Import the class registered under `name` (or named by a ``module:Class`` path)."""
    target = EVALUATORS.get(name, name)
    if ":" not in target:
        raise UnknownEvaluatorError(f"unknown evaluator {name!r}; known evaluators: {', '.join(EVALUATORS)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UnknownEvaluatorError(
                f"evaluator {name!r}: module {module_name!r} is not installed"
            ) from exc
        raise
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
        raise UnknownEvaluatorError(f"evaluator {name!r}: {target} is not an Evaluator subclass")
    return cls


def load_evaluators(spec: str | Sequence[str | Evaluator] | None = None) -> list[Evaluator]:
    """Evaluator instances for a spec: names, ``module:Class`` paths, ready instances, or None for all."""
    if spec is not None and not isinstance(spec, str) and any(isinstance(e, Evaluator) for e in spec):
        loaded: list[Evaluator] = []
        for item in spec:
            loaded.extend([item] if isinstance(item, Evaluator) else load_evaluators([item]))
        _check_unique(loaded)
        return loaded
    names = parse_names(spec)  # type: ignore[arg-type]
    loaded = [load_evaluator_class(name)() for name in names]
    _check_unique(loaded)
    return loaded


def _check_unique(evaluators: Sequence[Evaluator]) -> None:
    seen: set[str] = set()
    for evaluator in evaluators:
        if evaluator.name in seen or evaluator.name in RESERVED_KEYS:
            raise UnknownEvaluatorError(
                f"evaluator name {evaluator.name!r} is used twice or clashes with a pair field"
            )
        seen.add(evaluator.name)


RESERVED_KEYS = frozenset(
    {
        *CORE_FIELDS,
        *SIDES,
        *(f"{side}_{name}" for side in SIDES for name in (*SIDE_FIELDS, *PART_FIELDS)),
        "noise",
        "scored_by",
    }
)
"""Pair fields and output keys an evaluator name may not shadow."""


__all__ = [
    "EVALUATORS",
    "UnknownEvaluatorError",
    "known_names",
    "parse_names",
    "load_evaluator_class",
    "load_evaluators",
]
