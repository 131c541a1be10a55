"""The teacher LLM that writes synthetic rows: none (the default), a local model, or an endpoint."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.curate.synthesis import TeacherConfig
from resources.library_config import config_from


class TeacherLLM(
    config_from(
        TeacherConfig,
        base=dg.ConfigurableResource,
        fields=["max_new_tokens", "temperature", "seed", "batch_size"],
        name="TeacherLLMConfig",
    )
):
    """kind "none": no synthetic top-up. "transformers": a local causal LM by hub name or path,
    run by distilabel's TransformersLLM. "openai": any OpenAI-compatible chat endpoint (vLLM,
    llama.cpp server, OpenAI) through distilabel's OpenAILLM; the key comes from an
    environment variable (EnvVar), never from config files."""

    # Resource-only settings: "none" and an optional model are how a deployment turns the
    # top-up off, and the timeout bounds the whole generation run, not one request.
    kind: Literal["none", "transformers", "openai"] = Field(default="none", description="none, transformers or openai")
    model: str | None = Field(
        default=None, description="Hub name or local path (transformers), or the served model name (openai)"
    )
    base_url: str | None = Field(default=None, description="openai: the endpoint, e.g. http://gpu-box:8000/v1")
    api_key: str | None = Field(default=None, description="openai: the key; set it with EnvVar")
    device: str | None = Field(default=None, description="transformers: cuda, cpu, …")
    timeout_s: int = Field(default=600, description="Longest one generation run may take before it is stopped")
    attempts: int = Field(
        default=2,
        ge=1,
        description="Generation runs before the step fails: a run past timeout_s (distilabel's pipeline has been "
        "seen to hang in its teardown) is killed and started again",
    )
    threads: int | None = Field(
        default=None, description="transformers: CPU threads for generation; default: torch's choice"
    )

    def enabled(self) -> bool:
        return self.kind != "none"

    def teacher(self) -> TeacherConfig:
        if not self.model:
            raise ValueError(f"the {self.kind} teacher needs a model")
        return self.to_library(
            kind=self.kind,
            model=self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            device=self.device or "cpu",
            num_threads=self.threads,
        )
