"""The DEITA scorer LMs: none (the default on CPU boxes), local models, or a vLLM server."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.curate.deita import DeitaScorer, OpenAIScoreBackend, TransformersScoreBackend


@lru_cache(maxsize=4)
def _local(
    model: str, device: str | None, dtype: str | None, batch_size: int, max_length: int
) -> TransformersScoreBackend:
    # Cached per process so a multi-week run loads each scorer once.
    return TransformersScoreBackend(model, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length)


class DeitaScorerResource(dg.ConfigurableResource):
    """Which LMs score complexity and quality.

    backend "none": rows are not scored (DEITA scoring costs seconds per row on a CPU even for a
    0.5B model); the diversity pass still runs. "transformers": local causal LMs by hub name or
    path (hkust-nlp/deita-complexity-scorer, hkust-nlp/deita-quality-scorer). "openai": an
    OpenAI-compatible completions server returning logprobs (vLLM serving the scorers), so a
    GPU box scores millions of rows; the API key comes from an environment variable.
    """

    backend: Literal["none", "transformers", "openai"] = Field(
        default="none", description="none, transformers or openai"
    )
    complexity_model: str | None = Field(
        default=None, description="Complexity scorer: hub name or local path (or the served model name)"
    )
    quality_model: str | None = Field(
        default=None, description="Quality scorer: hub name or local path (or the served model name)"
    )
    base_url: str | None = Field(default=None, description="OpenAI-compatible server, e.g. http://gpu-box:8000/v1")
    api_key: str | None = Field(default=None, description="Server API key; set it with EnvVar, never in config files")
    tokenizer: str | None = Field(
        default=None,
        description="openai backend: the scorer's tokenizer (name or path), to truncate long rows in tokens",
    )
    device: str | None = Field(
        default=None, description="transformers backend: cuda, cpu, …; default: the GPU when there is one"
    )
    dtype: str | None = Field(
        default=None, description="transformers backend: float32, bfloat16, …; default: bf16 on GPU, fp32 on CPU"
    )
    batch_size: int = Field(default=8, description="Prompts per forward pass or request")
    max_length: int = Field(default=2048, description="Tokens per scorer prompt; longer fields are cut in the middle")
    concurrency: int = Field(default=4, description="openai backend: requests in flight")

    def get(self) -> DeitaScorer | None:
        if self.backend == "none":
            return None
        if not self.complexity_model or not self.quality_model:
            raise ValueError(f"the {self.backend} DEITA scorer needs complexity_model and quality_model")
        if self.backend == "transformers":
            return DeitaScorer(
                _local(self.complexity_model, self.device, self.dtype, self.batch_size, self.max_length),
                _local(self.quality_model, self.device, self.dtype, self.batch_size, self.max_length),
            )
        if not self.base_url:
            raise ValueError("the openai DEITA scorer needs base_url")

        def remote(model: str) -> OpenAIScoreBackend:
            return OpenAIScoreBackend(
                model,
                self.base_url,
                api_key=self.api_key,
                batch_size=self.batch_size,
                concurrency=self.concurrency,
                max_length=self.max_length,
                tokenizer=self.tokenizer,
            )

        return DeitaScorer(remote(self.complexity_model), remote(self.quality_model))
