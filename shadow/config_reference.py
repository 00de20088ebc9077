"""The README's configuration table, generated from `Settings` so the two cannot drift apart.

python -m shadow.config_reference      # prints the markdown rows
"""

from __future__ import annotations

from dataclasses import MISSING, fields

from shadow.core.settings import Settings


def markdown_rows() -> list[str]:
    rows = []
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if f.metadata.get("secret"):
            shown = "(secret)"
        elif isinstance(default, tuple):
            shown = ",".join(default) or "(empty)"
        else:
            shown = default if default != "" else "(empty)"
        flag = "--" + f.name.replace("_", "-")
        help_text = str(f.metadata["help"]).replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{flag}` | `SHADOW_{f.name.upper()}` | `{shown}` | {help_text} |")
    return rows


if __name__ == "__main__":
    print("\n".join(markdown_rows()))
