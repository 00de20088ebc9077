"""Settings as command-line flags: every `Settings` field becomes `--field-name`, with its help text.

Unset flags stay None, so the TOML file and SHADOW_* variables decide; `settings_from` merges them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import get_type_hints

from shadow.core.settings import Settings, load_settings


def add_settings_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Expose Settings fields as flags, with their help text; unset flags stay None (TOML/env decide)."""
    types = get_type_hints(Settings)
    group = parser.add_argument_group("settings (also SHADOW_<NAME> variables and --config TOML keys)")
    for f in fields(Settings):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        shown = "<secret>" if f.metadata.get("secret") else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown!r})".replace("%", "%%")
        kind = types[f.name]
        if kind is bool:
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif kind in (int, float):
            group.add_argument(
                flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(), help=help_text
            )
        else:
            group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(config_path=args.config, flags=flags)
