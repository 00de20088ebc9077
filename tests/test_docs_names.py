"""The modules, functions and files that the prose names exist: no docstring sends a reader to a name that
was moved, renamed or never written.

Checked: every dotted name under a package (`shadow.store.writer`, `evaluators.base.Evaluator`,
`shadow.core.settings.Settings.with_overrides`), every path into the repository (`shadow/store/writer.py`,
`tests/corpora.py`), every backticked `Class.attribute` and every backticked `module.py` in the
packages' docstrings and comments, in README.md and in scripts/*. A dotted name resolves when its longest
module prefix is a file of the repository and what follows is a top-level name of that module (then, for
a class, one of its attributes); a backticked `Class.attribute` needs a class of that name in the packages
or the tests with that attribute, its own or a base class's. Nothing is imported: modules are found
by file path and their names read with `ast`, so the test takes well under a second.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shadow", "evaluators", "reports", "migrations")
TOP_DIRS = (*PACKAGES, "tests", "scripts", "deploy")

# `shadow.core.pairs`, `evaluators.base.Evaluator.name`; not part of a longer dotted word or a path
# (`sqlite:///shadow.db`, `x.shadow.y`).
DOTTED = re.compile(rf"(?<![\w./-])(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+")
# `shadow/store/writer.py`, `tests/corpora.py`, `deploy/helm/`: a path from the repository root.
PATH = re.compile(rf"(?<![\w./-])(?:{'|'.join(TOP_DIRS)})/[\w./*-]*[\w/*]")
# `FrameProtocol.send()`, `Settings.with_overrides`: a class of ours and one of its attributes.
CLASS_ATTRIBUTE = re.compile(r"`([A-Z]\w*)\.([A-Za-z_]\w*)(?:\(\))?`")
# `judging.py`: a module file named without its directory.
FILE_NAME = re.compile(r"`(\w+\.py)`")
# A dotted word that names a file, not a module: `shadow.db`, `shadow.spool`.
FILE_SUFFIXES = {
    "db",
    "spool",
    "jsonl",
    "json",
    "html",
    "toml",
    "log",
    "txt",
    "yaml",
    "yml",
    "md",
    "py",
    "sh",
}


def python_prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and every string statement (docstrings, attribute docstrings)."""
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for offset, line in enumerate(node.value.value.splitlines()):
                yield node.lineno + offset, line


def whole_text(path: Path) -> Iterator[tuple[int, str]]:
    yield from enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)


def documents() -> Iterator[tuple[Path, Iterator[tuple[int, str]]]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, python_prose(path)
    yield ROOT / "README.md", whole_text(ROOT / "README.md")
    for path in sorted((ROOT / "scripts").iterdir()):
        if not path.is_file() or path.suffix == ".toml":
            continue
        is_python = path.suffix == ".py" or "python" in path.read_text(encoding="utf-8").partition("\n")[0]
        yield path, (python_prose(path) if is_python else whole_text(path))


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def defined_names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module or class body defines or imports, inside `if` / `try` blocks too."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = node
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                inner.extend(handler.body)
            names.update(defined_names(inner))
    return names


def class_attributes(node: ast.ClassDef) -> set[str]:
    """The class body's names and the `self.x` its methods assign."""
    names = set(defined_names(node.body))
    for leaf in ast.walk(node):
        if (
            isinstance(leaf, ast.Attribute)
            and isinstance(leaf.ctx, ast.Store)
            and isinstance(leaf.value, ast.Name)
            and leaf.value.id == "self"
        ):
            names.add(leaf.attr)
    return names


def dotted_problem(name: str) -> str | None:
    """Why `name` does not resolve, or None when it does."""
    parts = name.split(".")
    if parts[-1] in FILE_SUFFIXES:
        return None
    for cut in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:cut]))
        if path is not None:
            break
    else:
        return "no such module"
    rest = parts[cut:]
    if not rest:
        return None
    module = ".".join(parts[:cut])
    names = defined_names(module_tree(path).body)
    if rest[0] not in names:
        if path.name == "__init__.py" and (path.parent / rest[0]).is_dir():
            return None
        return f"{module} has no top-level name {rest[0]!r}"
    node = names[rest[0]]
    if len(rest) > 1 and isinstance(node, ast.ClassDef) and rest[1] not in class_attributes(node):
        return f"{module}.{rest[0]} has no attribute {rest[1]!r}"
    return None


@cache
def project_classes() -> dict[str, list[ast.ClassDef]]:
    classes: dict[str, list[ast.ClassDef]] = {}
    for package in (*PACKAGES, "tests"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(module_tree(path)):
                if isinstance(node, ast.ClassDef):
                    classes.setdefault(node.name, []).append(node)
    return classes


def inherited_attributes(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """A project class's attributes, those of its project base classes included."""
    names: set[str] = set()
    for node in project_classes().get(name, []):
        names |= class_attributes(node)
        for base in node.bases:
            base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
            if base_name and base_name not in seen:
                names |= inherited_attributes(base_name, seen | {base_name})
    return names


def class_attribute_problem(cls: str, attribute: str) -> str | None:
    if cls not in project_classes():
        return f"no class {cls!r} in the packages or the tests"
    if attribute not in inherited_attributes(cls):
        return f"{cls} has no attribute {attribute!r}"
    return None


@cache
def python_file_names() -> frozenset[str]:
    return frozenset(path.name for top in TOP_DIRS for path in (ROOT / top).rglob("*.py"))


def path_problem(text: str) -> str | None:
    target = text.split(":")[0].rstrip(".")
    if any(char in target for char in "*?["):
        return None if any(ROOT.glob(target)) else "no file matches"
    return None if (ROOT / target).exists() else "no such file"


def unresolved() -> list[str]:
    problems = []
    for path, lines in documents():
        where = path.relative_to(ROOT)
        for lineno, line in lines:
            for match in DOTTED.finditer(line):
                problem = dotted_problem(match.group())
                if problem:
                    problems.append(f"{where}:{lineno}: {match.group()} ({problem})")
            for match in PATH.finditer(line):
                problem = path_problem(match.group())
                if problem:
                    problems.append(f"{where}:{lineno}: {match.group()} ({problem})")
            for match in CLASS_ATTRIBUTE.finditer(line):
                problem = class_attribute_problem(*match.groups())
                if problem:
                    problems.append(f"{where}:{lineno}: {match.group()} ({problem})")
            for match in FILE_NAME.finditer(line):
                if match.group(1) not in python_file_names():
                    problems.append(f"{where}:{lineno}: {match.group()} (no such file)")
    return problems


def test_every_named_module_function_and_file_exists() -> None:
    problems = unresolved()
    assert not problems, "names in the prose that do not exist:\n" + "\n".join(problems)


def test_the_check_sees_a_wrong_name() -> None:
    assert dotted_problem("shadow.store.writer") is None
    assert dotted_problem("shadow.core.settings.Settings.with_overrides") is None
    assert dotted_problem("shadow.gate.evaluate_gate") is None
    assert dotted_problem("shadow.metrics") is not None
    assert (
        dotted_problem("evaluators.base.NoSuchThing") == "evaluators.base has no top-level name 'NoSuchThing'"
    )
    assert dotted_problem("shadow.core.settings.Settings.no_such_field") is not None
    assert path_problem("shadow/store/writer.py") is None
    assert path_problem("evaluators/corpora.py") == "no such file"
    assert class_attribute_problem("FrameProtocol", "send") is None
    assert class_attribute_problem("CoherenceEvaluator", "metadata") is None  # defined on a base class
    assert class_attribute_problem("FrameSender", "send") is not None
    assert [m.group() for m in DOTTED.finditer("see `shadow.core.pairs.Pair`, not sqlite:///shadow.db.")] == [
        "shadow.core.pairs.Pair"
    ]
