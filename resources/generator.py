"""The teacher LLM that writes synthetic rows: none (the default), a local model, or an endpoint."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.curate.synthesis import TeacherConfig


class TeacherLLM(dg.ConfigurableResource):
    """kind "none": no synthetic top-up. "transformers": a local causal LM by hub name or path,
    run by distilabel's TransformersLLM. "openai": any OpenAI-compatible chat endpoint (vLLM,
    llama.cpp server, OpenAI) through distilabel's OpenAILLM; the key comes from an
    environment variable (EnvVar), never from config files."""

    kind: Literal["none", "transformers", "openai"] = Field(default="none", description="none, transformers or openai")
    model: str | None = Field(default=None, description="Hub name or local path (transformers), or the served model name (openai)")
    base_url: str | None = Field(default=None, description="openai: the endpoint, e.g. http://gpu-box:8000/v1")
    api_key: str | None = Field(default=None, description="openai: the key; set it with EnvVar")
    device: str | None = Field(default=None, description="transformers: cuda, cpu, …")
    max_new_tokens: int = Field(default=256, description="Longest generated answer, in tokens")
    temperature: float = Field(default=0.0, description="0: greedy (deterministic); above 0: seeded sampling")
    seed: int = Field(default=0, description="Sampling seed")
    batch_size: int = Field(default=8, description="Requests per batch")
    timeout_s: int = Field(default=600, description="Longest a generation run may take before it is stopped")
    threads: int | None = Field(default=None, description="transformers: CPU threads for generation; default: torch's choice")

    def enabled(self) -> bool:
        return self.kind != "none"

    def teacher(self) -> TeacherConfig:
        if not self.model:
            raise ValueError(f"the {self.kind} teacher needs a model")
        return TeacherConfig(
            kind=self.kind, model=self.model, base_url=self.base_url, api_key=self.api_key, device=self.device or "cpu",
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed, batch_size=self.batch_size,
            num_threads=self.threads,
        )
