"""The deploy examples name real settings: a misspelt `SHADOW_*` variable is ignored silently by design
(the environment holds other programs' variables too), so a copied example must not carry one."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from shadow.core.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_every_shadow_variable_in_the_deploy_examples_is_a_setting():
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    used = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".toml", ".env", ".sh", ".md"}:
            for name in re.findall(r"\b(SHADOW_[A-Z0-9_]+)\b", path.read_text(encoding="utf-8")):
                used.setdefault(name, path.relative_to(DEPLOY))
    assert used, "the examples set no variable at all"
    unknown = {name: str(where) for name, where in used.items() if name not in known}
    assert unknown == {}
