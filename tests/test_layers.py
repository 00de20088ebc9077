"""Dependencies run one way: each package directory imports only the layers below it.

The layers, lowest first (README, "Architecture"):

    shadow.core            the leaf: the pair and its one reader view, records, text rules, settings, errors
    migrations             the store's schema history (knows nothing of the store's code)
    shadow.store           SQLite / PostgreSQL / JSONL
    evaluators | sidecar   scoring, and the proxy with its capture worker parts; neither knows the other
    shadow.gate            the judge
    reports                the HTML report and the export table
    shadow                 the commands (cli, score, serve's worker, replay, the model simulators)

Every import counts, lazy ones inside functions included: a lazy import is still a dependency, it only
moves the failure to run time. The graph is read from the source with `ast`, not by importing anything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shadow", "evaluators", "reports", "migrations")

LAYERS: tuple[tuple[str, ...], ...] = (
    ("shadow.core",),
    ("migrations", "migrations.versions"),
    ("shadow.store",),
    ("evaluators", "shadow.sidecar"),
    ("shadow.gate",),
    ("reports",),
    ("shadow",),
)
"""Packages in the same row may not import each other (a row is one layer, its members side by side)."""


def module_files() -> dict[str, tuple[str, Path]]:
    """Module name -> (the package directory it lives in, its file)."""
    modules: dict[str, tuple[str, Path]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = (".".join(parts[:-1]), path)
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` anywhere in the file may refer to."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def package_edges(modules: dict[str, tuple[str, Path]]) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the module-level imports behind that edge."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, (_package, path) in modules.items():
        for name in imported_names(module, path):
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if not target or target == module:
                continue
            source_package, target_package = modules[module][0], modules[target][0]
            if source_package != target_package:
                edges[(source_package, target_package)].append(f"{module} -> {target}")
    return edges


def layer_violations(
    edges: dict[tuple[str, str], list[str]], layers: tuple[tuple[str, ...], ...]
) -> list[str]:
    rank = {package: index for index, row in enumerate(layers) for package in row}
    problems = []
    for (source, target), examples in sorted(edges.items()):
        if source not in rank or target not in rank:
            problems.append(f"{source} -> {target}: a package without a layer (add it to LAYERS)")
        elif rank[target] >= rank[source]:
            problems.append(f"{source} -> {target} points up or sideways ({examples[0]})")
    return problems


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_package_has_a_layer_and_imports_only_below_it():
    modules = module_files()
    packages = {package for package, _path in modules.values()}
    listed = {package for row in LAYERS for package in row}
    assert packages <= listed, f"packages without a layer: {sorted(packages - listed)}"
    assert layer_violations(package_edges(modules), LAYERS) == []


def test_no_cycle_between_package_directories():
    assert cycles(package_edges(module_files())) == []


def test_installed_packages_never_import_tests_or_scripts():
    offenders = [
        f"{module} imports {name}"
        for module, (_package, path) in module_files().items()
        for name in imported_names(module, path)
        if name.split(".")[0] in {"tests", "scripts"}
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "name,body",
    [
        # A lazy import inside a function is still an edge, and it points up: store -> gate.
        ("shadow.store.planted", "def f():\n    from shadow.gate import judge\n"),
        # Relative imports resolve: evaluators and the sidecar sit side by side and may not meet.
        ("shadow.sidecar.planted", "from ...evaluators import base\n"),
    ],
)
def test_the_checker_sees_a_violation(tmp_path, name, body):
    """The rule can fail: a planted import that points up or sideways is reported."""
    planted = tmp_path / "planted.py"
    planted.write_text(body)
    modules = module_files()
    modules[name] = (name.rpartition(".")[0], planted)
    edges = package_edges(modules)
    assert any(name in example for examples in edges.values() for example in examples)
    assert layer_violations(edges, LAYERS), f"the planted import in {name} went unseen"
