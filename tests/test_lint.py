"""The code keeps ruff's rules and formatting (`[tool.ruff]` in pyproject.toml), the Python scripts under
scripts/ included: a check that only runs when someone remembers it is not kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(command: list[str]) -> None:
    assert RUFF.exists(), f"{RUFF} is missing: scripts/setup installs the dev dependencies, ruff among them"
    result = subprocess.run([str(RUFF), *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_python_script_is_linted() -> None:
    # ruff reads files by suffix; an extensionless script must be named in `extend-include`.
    listed = subprocess.run(
        [str(RUFF), "check", "--show-files", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    ).stdout
    for path in sorted((ROOT / "scripts").iterdir()):
        if path.suffix == "" and path.read_text(errors="replace").startswith("#!/usr/bin/env python"):
            assert str(path) in listed, f"{path.name} is not linted: add it to [tool.ruff] extend-include"
