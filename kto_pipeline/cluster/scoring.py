"""DEITA scoring on a Ray cluster: a `ScoreBackend` that runs a local causal-LM scorer's
batches as Ray tasks (on GPUs when the cluster has them), with the same scores.

The driver tokenizes (for lengths only) and cuts the prompts into exactly the batches
`TransformersScoreBackend.score` forms here: longest first, ties by position, `batch_size` a
batch. A task scores whole batches, one `score` call each; inside it the batch keeps its order
(already sorted by the same key), so every forward pass sees the same padded tensor as the
local run and returns the same floats. The model loads once per worker process.

An `OpenAIScoreBackend` is left as it is: its server (vLLM) is already where that work scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from kto_pipeline.cluster.config import RayConfig
from kto_pipeline.cluster.session import cluster_gpus, connect
from kto_pipeline.curate.deita.backends import ScoreBackend, TransformersScoreBackend
from kto_pipeline.curate.deita.scorer import DeitaScorer

# (model, device, dtype, batch_size, max_length, merge_variants): what rebuilds the scorer on a worker.
ScorerSettings = tuple[str, str | None, Any, int, int, bool]


def _settings(local: TransformersScoreBackend) -> ScorerSettings:
    # The requested device and dtype (None: the worker's GPU if it has one), not the driver's.
    return (local.model_ref, local._device, local._dtype, local.batch_size, local.max_length, local.merge_variants)


@lru_cache(maxsize=4)
def _scorer(settings: ScorerSettings) -> TransformersScoreBackend:
    model, device, dtype, batch_size, max_length, merge_variants = settings
    return TransformersScoreBackend(
        model, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length, merge_variants=merge_variants
    )


def _score_task(settings: ScorerSettings, batches: list[list[str]]) -> list[np.ndarray]:
    scorer = _scorer(settings)
    return [scorer.score(batch) for batch in batches]


class RayScoreBackend(ScoreBackend):
    """`local`'s scores, its batches run on the cluster (see the module docstring)."""

    def __init__(self, ray_config: RayConfig, local: TransformersScoreBackend, batches_per_task: int = 4):
        super().__init__()
        if batches_per_task < 1:
            raise ValueError(f"batches_per_task must be >= 1, got {batches_per_task}")
        self.ray_config = ray_config
        self.local = local
        self.name = local.name
        self.max_length = local.max_length
        self.batches_per_task = batches_per_task

    def measure_tokenizer(self):
        return self.local.measure_tokenizer()

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        out = np.empty(len(prompts), dtype=np.float64)
        if not prompts:
            return out
        import ray

        connect(self.ray_config)
        gpus = self.ray_config.gpus_per_task
        if gpus is None:
            gpus = 1.0 if cluster_gpus() > 0 else 0.0
        task = ray.remote(_score_task).options(
            num_cpus=self.ray_config.num_cpus_per_task,
            num_gpus=gpus,
            max_retries=self.ray_config.max_retries,
            retry_exceptions=False,
        )
        encoded = self.local.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
        size = self.local.batch_size
        plan = [order[s : s + size] for s in range(0, len(order), size)]
        groups = [plan[g : g + self.batches_per_task] for g in range(0, len(plan), self.batches_per_task)]
        settings = _settings(self.local)
        refs = [task.remote(settings, [[prompts[i] for i in batch] for batch in group]) for group in groups]
        for group, ref in zip(groups, refs, strict=True):
            for batch, values in zip(group, ray.get(ref), strict=True):
                out[batch] = values
        self._count(prompts=len(prompts), batches=math.ceil(len(prompts) / size))
        return out

    def __repr__(self) -> str:
        return f"RayScoreBackend({self.local!r}, address={self.ray_config.address!r})"


def on_cluster(ray_config: RayConfig, scorer: DeitaScorer) -> DeitaScorer:
    """`scorer` with its local-model backends run on the cluster (one wrapper when complexity
    and quality are one backend object, as the resource's cache makes them for one model)."""
    wrapped: dict[int, ScoreBackend] = {}

    def wrap(backend: ScoreBackend) -> ScoreBackend:
        if not isinstance(backend, TransformersScoreBackend):
            return backend
        if id(backend) not in wrapped:
            wrapped[id(backend)] = RayScoreBackend(ray_config, backend)
        return wrapped[id(backend)]

    return DeitaScorer(wrap(scorer.complexity), wrap(scorer.quality))
