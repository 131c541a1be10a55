"""What to top up (SynthesisConfig) and which teacher LLM writes the rows (TeacherConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kto_pipeline.curate.synthesis.prompts import DEFAULT_DEGRADE_TEMPLATE, DEFAULT_IMPROVE_TEMPLATE

__all__ = ["SynthesisConfig", "TeacherConfig"]


@dataclass(frozen=True)
class SynthesisConfig:
    """How much to top up and from which prompts; the teacher's instruction templates.

    Templates are Jinja2, rendered into the teacher's system message, with `response` (the
    source row's completion: the rejected answer, or the accepted one), `prompt` (the prompt
    text) and `system_prompt` (the conversation's own system message, or "").
    """

    target_ratio: float = field(
        default=1.0, metadata={"help": "Top the short class up towards majority / target_ratio."}
    )
    max_share: float = field(
        default=0.25,
        metadata={"help": "Synthetic rows are at most this share of all training rows after the top-up."},
    )
    overgeneration: float = field(
        default=1.25, metadata={"help": "Generate this × the target: redaction and dedup drop some."}
    )
    max_generations_per_prompt: int = field(
        default=1,
        metadata={"help": "Most generations from one distinct source prompt (generation indices 0, 1, ...)."},
    )
    seed: int = field(default=0, metadata={"help": "Picks the source prompts."})
    source_signals: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "Signals a source row may have; None: any production signal of the other class."},
    )
    improve_template: str = field(
        default=DEFAULT_IMPROVE_TEMPLATE,
        metadata={
            "help": "Teacher instruction when desirable rows are short: answer better than the rejected "
            "answer (`response`)."
        },
    )
    degrade_template: str = field(
        default=DEFAULT_DEGRADE_TEMPLATE,
        metadata={
            "help": "Teacher instruction when undesirable rows are short: a plausible answer with one "
            "subtle flaw, modelled on the accepted answer (`response`)."
        },
    )

    def __post_init__(self) -> None:
        if not self.target_ratio > 0:
            raise ValueError(f"target_ratio must be > 0, got {self.target_ratio}")
        if not 0 <= self.max_share < 1:
            raise ValueError(f"max_share must be in [0, 1), got {self.max_share}")
        if not self.overgeneration >= 1:
            raise ValueError(f"overgeneration must be >= 1, got {self.overgeneration}")
        if self.max_generations_per_prompt < 1:
            raise ValueError("max_generations_per_prompt must be >= 1")


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher LLM: a local transformers model, or an OpenAI-compatible endpoint.

    The key only ever comes from the caller: never from the environment, never into repr or logs.
    """

    kind: Literal["transformers", "openai"] = field(
        default="transformers",
        metadata={
            "help": "transformers: a local causal LM run by distilabel's TransformersLLM; openai: an "
            "OpenAI-compatible chat endpoint (vLLM, llama.cpp server, OpenAI) through OpenAILLM."
        },
    )
    model: str = field(
        default="",
        metadata={"help": "Hub name or local path (transformers), or the served model name (openai). Required."},
    )
    base_url: str | None = field(
        default=None,
        metadata={"help": "openai: the endpoint, e.g. http://gpu-box:8000/v1; None: distilabel's default."},
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "openai: the key, never shown in repr or logs. None: a placeholder is sent (local "
            "servers ignore it) rather than distilabel's fallback to the OPENAI_API_KEY "
            "environment variable."
        },
    )
    device: str | None = field(default="cpu", metadata={"help": "transformers: cuda, cpu, ..."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest generated answer, in tokens."})
    temperature: float = field(
        default=0.0, metadata={"help": "0: greedy decoding (deterministic); above 0: sampling seeded with `seed`."}
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Sampling seed. transformers: `set_seed` in the worker after loading; openai: the "
            "`seed` request field, which vLLM honours and OpenAI treats as best effort."
        },
    )
    batch_size: int = field(default=8, metadata={"help": "Requests per batch."})
    timeout_s: int = field(default=120, metadata={"help": "openai only: timeout of one request, in seconds."})
    max_retries: int = field(default=3, metadata={"help": "openai only: retries of a failed request."})
    # On a shared, busy box OpenMP threads spin-wait on each other: the tiny test model
    # generated 10x faster with 1 thread than with 2 on our loaded 2-core machine.
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "transformers only: torch threads in the generation worker; None: torch's default, one per core."
        },
    )

    def __post_init__(self) -> None:
        if self.kind not in ("transformers", "openai"):
            raise ValueError(f"kind must be 'transformers' or 'openai', got {self.kind!r}")
        if not self.model:
            raise ValueError("model is required")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("num_threads must be >= 1")

    def describe(self) -> dict[str, Any]:
        """What may be logged or stored as metadata: everything but the key."""
        return {
            "kind": self.kind,
            "model": self.model,
            "base_url": self.base_url,
            "device": self.device,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_threads": self.num_threads,
        }

    def generation_kwargs(self) -> dict[str, Any]:
        if self.kind == "openai":
            return {
                "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature,
                "top_p": 1.0,
                "extra_body": {"seed": self.seed},
            }
        sampling = self.temperature > 0
        # Greedy with transformers' defaults for the sampling knobs: any other value makes
        # transformers warn "generation flags are not valid" on every batch.
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sampling,
            "temperature": self.temperature if sampling else 1.0,
            "top_p": 1.0,
            "top_k": 0 if sampling else 50,
        }
