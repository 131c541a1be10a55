"""The judge LLM that compares the candidate's and the champion's answers: none (the default), a
local model, or an OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.evaluate import OpenAIJudge, TransformersJudge, load_template


class JudgeLLM(dg.ConfigurableResource):
    """kind "none": no judge (the answer-based promotion rules that need one are skipped unless
    the policy's `require_judge` is set; the judge-free signals still run). "openai": any
    OpenAI-compatible chat endpoint (vLLM, llama.cpp server, OpenAI; the key from an
    environment variable with EnvVar, never from config files). "transformers": a local causal
    LM by hub name or path. The prompt is one file, `kto_pipeline/evaluate/judge_prompt.md`
    by default; a deployment can point `template` at its own."""

    kind: Literal["none", "openai", "transformers"] = Field(default="none", description="none, openai or transformers")
    model: str | None = Field(
        default=None, description="The served model name (openai) or a hub name / local path (transformers)"
    )
    base_url: str | None = Field(default=None, description="openai: the endpoint, e.g. http://gpu-box:8000/v1")
    api_key: str | None = Field(default=None, description="openai: the key; set it with EnvVar")
    template: str | None = Field(
        default=None,
        description="A judge template file with {prompt}, {answer_a}, {answer_b}; default: the bundled one",
    )
    max_tokens: int = Field(default=512, description="Longest judge reply, in tokens")
    concurrency: int = Field(default=4, description="openai: requests in flight")
    timeout_s: float = Field(default=120.0, description="openai: seconds per request before it counts as no verdict")
    device: str | None = Field(default=None, description="transformers: cuda, cpu, …")

    def enabled(self) -> bool:
        return self.kind != "none"

    def backend(self) -> OpenAIJudge | TransformersJudge | None:
        if self.kind == "none":
            return None
        if not self.model:
            raise ValueError(f"the {self.kind} judge needs a model")
        if self.kind == "transformers":
            return TransformersJudge(self.model, device=self.device, max_new_tokens=self.max_tokens)
        if not self.base_url:
            raise ValueError("the openai judge needs base_url")
        return OpenAIJudge(
            self.model,
            self.base_url,
            api_key=self.api_key,
            max_tokens=self.max_tokens,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
        )

    def prompt_template(self) -> str:
        return load_template(self.template)
