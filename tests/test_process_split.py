"""The serving process only forwards bytes: it does not even import what parses, redacts, stores or
judges. (A lazy import in a function would still be one: this checks the modules really loaded.)"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "shadow.sidecar.mirror",
    "shadow.sidecar.capture",
    "shadow.sidecar.redact",
    "shadow.core.storable",
    "shadow.store",
    "shadow.gate",
    "shadow.sidecar.admin",
    "shadow.worker",
    "sqlalchemy",
    "prometheus_client",
    "evaluators",
    "reports",
)


def test_serving_process_loads_no_capture_store_or_gate_code():
    code = (
        "import json, sys\n"
        "from shadow.cli import cmd_serve\n"  # what `shadow serve` runs, before the loop starts
        "import shadow.sidecar.server\n"
        "from shadow.core.settings import Settings, admin_token_required\n"
        "admin_token_required(Settings())\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert "shadow.sidecar.proxy" in loaded and "shadow.sidecar.capture_link" in loaded
    offending = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offending == []
