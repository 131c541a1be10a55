"""Sentence embeddings on a Ray cluster: the distinct texts a `TextEmbedder` would encode,
encoded by Ray tasks (on GPUs when the cluster has them), with the same vectors.

`TextEmbedder.embed` still finds the distinct texts and orders them longest first on the
driver; only its `encode` step moves. The driver cuts the texts into exactly the batches
sentence-transformers would form (`encoder_batches`), and a task encodes whole batches, one
forward pass each: an int8 model quantizes per batch, so the same batches give the same bytes.
The model loads once per worker process and stays for its later tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache

import numpy as np

from kto_pipeline.cluster.config import RayConfig
from kto_pipeline.cluster.session import cluster_gpus, connect
from kto_pipeline.curate.embeddings import EmbedderConfig, TextEmbedder, encoder_batches


@lru_cache(maxsize=2)
def _embedder(config: EmbedderConfig) -> TextEmbedder:
    return TextEmbedder.from_config(config)


def _encode_task(config: EmbedderConfig, batches: list[list[str]]) -> list[np.ndarray]:
    return _embedder(config).encode_batches(batches)


def _name_task(config: EmbedderConfig) -> str:
    # Resolved where the vectors are made: "auto" is torch on a GPU worker, int8 ONNX on a CPU one.
    return _embedder(config).name


class RayEncoder:
    """Encodes for one `TextEmbedder` (its settings, not its loaded model) on the cluster.

    Use `embed` where `TextEmbedder.embed` would be used, and `name` for what made the vectors.
    """

    def __init__(self, ray_config: RayConfig, embedder: TextEmbedder):
        self.ray_config = ray_config
        self.embedder = embedder
        self.config = embedder.to_config()

    def _options(self) -> dict:
        gpus = self.ray_config.gpus_per_task
        if gpus is None:
            gpus = 1.0 if cluster_gpus() > 0 else 0.0
        return {
            "num_cpus": self.ray_config.num_cpus_per_task,
            "num_gpus": gpus,
            "max_retries": self.ray_config.max_retries,
            "retry_exceptions": False,
        }

    @cached_property
    def name(self) -> str:
        """The embedder's name as the cluster's workers resolve it (see `TextEmbedder.name`)."""
        import ray

        connect(self.ray_config)
        return ray.get(ray.remote(_name_task).options(**self._options()).remote(self.config))

    def __call__(self, texts: list[str]) -> np.ndarray:
        """The vectors of `texts` (distinct, longest first), as `TextEmbedder._encode` returns them."""
        import ray

        connect(self.ray_config)
        task = ray.remote(_encode_task).options(**self._options())
        plan = encoder_batches(texts, self.embedder.batch_size)
        per_task = self.ray_config.embedding_batches_per_task
        config_ref = ray.put(self.config)
        groups = [plan[i : i + per_task] for i in range(0, len(plan), per_task)]
        refs = [task.remote(config_ref, [[texts[j] for j in batch] for batch in group]) for group in groups]
        out: np.ndarray | None = None
        for group, ref in zip(groups, refs, strict=True):
            for batch, vectors in zip(group, ray.get(ref), strict=True):
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[batch] = vectors
        assert out is not None, "encode is called with at least one text"
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """`TextEmbedder.embed(texts)`, encoded on the cluster."""
        return self.embedder.embed(texts, encode=self)
