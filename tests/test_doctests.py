"""The examples in the packages' docstrings run as tests, so that none of them drifts from the code.

One test per module that has an example (`>>>`): the module is imported and its examples run with the
standard `doctest` runner. The modules are found by reading files, so collecting these tests imports
nothing; only a module with examples is imported, when its test runs. This is the same check as
`pytest --doctest-modules shadow evaluators reports migrations`, inside the one `scripts/test` run and
without changing `testpaths`.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shadow", "evaluators", "reports", "migrations")

EXCLUDED = {
    # Alembic's environment script: it runs the migrations when alembic executes it, and importing it
    # anywhere else fails (`context.is_offline_mode()` needs alembic's running EnvironmentContext).
    "migrations.env",
}


def modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name not in EXCLUDED and ">>>" in path.read_text(encoding="utf-8"):
                names.append(name)
    return names


MODULES = modules_with_examples()


def test_examples_are_found() -> None:
    assert len(MODULES) >= 15, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
