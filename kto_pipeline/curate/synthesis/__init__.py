"""Synthetic top-up of the short KTO class: the plan, the generation (distilabel) and the cap.

KTO wants both classes; production feedback is lopsided (usually many more thumbs-down than
thumbs-up). Each week the short class is topped up with rows written by a teacher LLM:

- desirable short: for prompts that got a thumbs-down (label False), the teacher writes a
  better answer → a desirable row, signal SIGNAL_SYNTHETIC_IMPROVED. It sees the user's
  conversation, a system instruction to answer well, and the rejected answer, so that it
  avoids that answer's mistakes;
- undesirable short: for prompts that got a thumbs-up, the teacher writes a plausible but
  flawed answer (a subtle factual or reasoning mistake, or ignoring part of the request) → an
  undesirable row, signal SIGNAL_SYNTHETIC_DEGRADED. Known risk: the policy then learns to
  avoid the *teacher's* failure modes, not its own; that is one reason the share is capped.

The work is split in three so the caller (the Dagster layer) can filter in between:

1. `plan_synthesis(rows, config)`: pure. Which class is short, how many rows would reach
   majority / target_ratio, the cap (synthetic rows are at most `max_share` of the rows after
   the top-up), and which source rows to generate from: distinct prompts, chosen by a seeded
   hash (independent of input order), at most `max_generations_per_prompt` each, and
   `overgeneration` × the target so that PII redaction and dedup can drop some.
2. `generate_synthetic(plan, teacher, cache_dir)`: runs a real distilabel pipeline
   (LoadDataFromDicts → ChatGeneration) with a `TransformersLLM` or an `OpenAILLM` and turns
   the generations into contract rows. Empty generations are dropped with a reason.
   ChatGeneration is TextGeneration's chat sibling: TextGeneration renders its template into
   a single user turn, which would flatten multi-turn production conversations, so our
   (configurable Jinja2) template becomes the system message and the conversation follows.
3. `apply_cap(generated, plan)`: after redaction/dedup, keeps at most the target number of
   rows, in plan order (deterministic).

distilabel 1.5.3 needs care to run inside a pipeline step (details at `run_chat_generation`
and `_child_main`):
- worker processes: distilabel forks its step workers from the process that runs the
  pipeline; if that process has used torch's OpenMP thread pool before, the forked worker
  deadlocks in libgomp. The pipeline therefore runs in a fresh child interpreter, which also
  keeps distilabel's process-wide side effects (root logger handlers and level, a SIGINT
  handler it never restores, env vars) out of the caller (Dagster, pytest, a plain script).
- cache: `Pipeline(cache_dir=...)` plus DISTILABEL_CACHE_DIR, both a fresh folder under the
  caller's directory (batch files are written even with `use_cache=False`); nothing goes to
  ~/.cache/distilabel.
- no Distiset: `Pipeline.run` ends with `create_distiset`, which writes the datasets cache
  under ~ and fetches BibTeX citations from arxiv2bibtex.org with an untimed `requests.get`.
  In the child it is replaced by a stub and the leaf step's parquet files are read directly.
- logs: DISTILABEL_LOG_LEVEL (default WARNING here) for the child and its workers; the
  child's console output is forwarded to this module's logger.

The api_key of an OpenAI-compatible endpoint reaches the child over stdin only, is kept out
of reprs and logs, and distilabel leaves any `api_key` field out of the pipeline.yaml it
writes (utils/serialization.py:197).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.ingest.contract import (
    ROW_DTYPES,
    SIGNAL_SYNTHETIC_DEGRADED,
    SIGNAL_SYNTHETIC_IMPROVED,
    SOURCE_SYNTHETIC,
    content_hash,
    frame_from_records,
    metadata_json,
)

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM

__all__ = [
    "DEFAULT_DEGRADE_TEMPLATE",
    "DEFAULT_IMPROVE_TEMPLATE",
    "DROPPED_DTYPES",
    "CapResult",
    "ChatGenerationRun",
    "GenerationRequest",
    "GenerationResult",
    "SynthesisConfig",
    "SynthesisPlan",
    "SynthesisReason",
    "TargetCounts",
    "TeacherConfig",
    "apply_cap",
    "build_llm",
    "build_synthetic_rows",
    "generate_synthetic",
    "plan_synthesis",
    "run_chat_generation",
    "target_counts",
    "teacher_messages",
]

logger = logging.getLogger(__name__)

PIPELINE_NAME = "kto-synthetic-topup"
LOAD_STEP = "load_requests"
TEACHER_STEP = "teacher"

# Generated rows do not come from a dump: dump is null and line 0 (line is int64, not nullable;
# 0 is also what the quarantine schema uses for "not a record of a dump").
SYNTHETIC_LINE = 0


class SynthesisReason:
    """Why a source row was skipped or a generated row dropped. Stable strings."""

    BAD_PROMPT_MESSAGES = "bad_prompt_messages"  # prompt_messages is not a JSON chat
    NOT_ENDING_WITH_USER = "conversation_not_ending_with_user"  # nothing for the teacher to answer
    EMPTY_GENERATION = "empty_generation"  # empty or whitespace-only text
    GENERATION_FAILED = "generation_failed"  # distilabel returned None (the LLM call raised)
    MISSING_OUTPUT = "missing_output"  # the request never came back from the pipeline
    OVER_CAP = "over_cap"  # more rows survived filtering than the target allows


DROPPED_DTYPES: dict[str, str] = {
    "row_id": "str",  # the id the generated row would have had
    "source_row_id": "str",
    "generation_index": "int64",
    "reason": "str",
    "detail": "str",
}

DEFAULT_IMPROVE_TEMPLATE = (
    "You are an expert assistant. Reply to the user's last message in the conversation as well "
    "as you can: correct, complete, clear and concise, following every instruction the user gave."
    "{% if system_prompt %}\n\nThe assistant in this conversation runs under this system prompt; "
    "follow it:\n<<<\n{{ system_prompt }}\n>>>{% endif %}"
    "\n\nAn earlier answer to this conversation was rated unhelpful by the user. Avoid its "
    "mistakes; do not mention it and do not copy from it. The rejected answer:\n<<<\n{{ response }}\n>>>"
)

DEFAULT_DEGRADE_TEMPLATE = (
    "You write examples of flawed assistant answers for training data. Reply to the user's last "
    "message with an answer that reads as plausible, fluent and confident, but contains exactly "
    "one subtle flaw: a factual error, a reasoning mistake, or ignoring part of the request. "
    "Do not point out, hint at or apologise for the flaw."
    "{% if system_prompt %}\n\nThe assistant in this conversation runs under this system prompt:"
    "\n<<<\n{{ system_prompt }}\n>>>{% endif %}"
    "\n\nFor reference, this answer was rated helpful by the user; write a flawed variant of an "
    "answer like it, not a copy:\n<<<\n{{ response }}\n>>>"
)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthesisConfig:
    """How much to top up and from which prompts; the teacher's instruction templates.

    Templates are Jinja2, rendered into the teacher's system message, with `response` (the
    source row's completion: the rejected answer, or the accepted one), `prompt` (the prompt
    text) and `system_prompt` (the conversation's own system message, or "").
    """

    target_ratio: float = 1.0  # short class target = majority / target_ratio
    max_share: float = 0.25  # synthetic rows <= max_share of all rows after the top-up
    overgeneration: float = 1.25  # generate this × target; redaction and dedup drop some
    max_generations_per_prompt: int = 1
    seed: int = 0  # picks the source prompts
    source_signals: tuple[str, ...] | None = None  # None: any production signal of the other class
    improve_template: str = DEFAULT_IMPROVE_TEMPLATE
    degrade_template: str = DEFAULT_DEGRADE_TEMPLATE

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

    temperature 0 means greedy decoding; above 0, sampling seeded with `seed` (transformers:
    `set_seed` in the worker after loading; endpoints: the `seed` request field, which vLLM
    honours and OpenAI treats as best effort). `api_key` is never shown in repr or logs; with
    None a placeholder is sent (local servers ignore it) rather than distilabel's fallback to
    the OPENAI_API_KEY environment variable, so the key only ever comes from the caller.
    """

    kind: Literal["transformers", "openai"] = "transformers"
    model: str = ""
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    device: str | None = "cpu"
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 8
    timeout_s: int = 120  # per request, endpoints only
    max_retries: int = 3  # endpoints only
    # transformers only: torch threads in the generation worker (None: torch's default, one
    # per core). On a shared, busy box OpenMP threads spin-wait on each other: the tiny test
    # model generated 10x faster with 1 thread than with 2 on our loaded 2-core machine.
    num_threads: int | None = None

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
            "kind": self.kind, "model": self.model, "base_url": self.base_url,
            "device": self.device, "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature, "seed": self.seed, "batch_size": self.batch_size,
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


# pydantic 2.14 warns about a `Field(default=None)` inside distilabel's RuntimeParameter alias,
# once per field while distilabel's classes are defined (hundreds of lines): not ours, harmless.
_PYDANTIC_NOISE = "The 'default' attribute with value None"


def _import_distilabel() -> None:
    """Import distilabel (lazily: ~2 s) without its pydantic warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PYDANTIC_NOISE)
        # distilabel.pipeline imports its own deprecated `distilabel.llms` alias.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"distilabel\.")
        import distilabel.distiset  # noqa: F401
        import distilabel.models.llms  # noqa: F401
        import distilabel.pipeline  # noqa: F401
        import distilabel.steps  # noqa: F401
        import distilabel.steps.tasks  # noqa: F401


_SEEDED_CLASS: type | None = None


def _seeded_transformers_llm_class() -> type:
    """`TransformersLLM` + a seed (set after loading, in the worker), a torch thread count and
    quiet transformers logs.

    TransformersLLM has no seed, and its worker process starts from whatever torch RNG state
    it forked with. Built lazily (importing distilabel costs ~2 s) but published as a module
    attribute, because the pool pickles the step and its LLM by reference.
    """
    global _SEEDED_CLASS
    if _SEEDED_CLASS is not None:
        return _SEEDED_CLASS
    _import_distilabel()
    from distilabel.models.llms import TransformersLLM

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PYDANTIC_NOISE)  # the subclass re-checks them

        class SeededTransformersLLM(TransformersLLM):
            seed: int | None = None
            quiet: bool = True
            num_threads: int | None = None

            def load(self) -> None:
                if self.num_threads is not None:
                    import torch

                    torch.set_num_threads(self.num_threads)
                if self.quiet:
                    # Runs in the step's worker process, which ends with the pipeline: silences
                    # the weight-loading progress bar and the torch_dtype deprecation warning.
                    from transformers.utils import logging as hf_logging

                    hf_logging.set_verbosity_error()
                    hf_logging.disable_progress_bar()
                super().load()
                if self.seed is not None:
                    from transformers import set_seed

                    set_seed(self.seed)

    SeededTransformersLLM.__module__ = __name__
    SeededTransformersLLM.__qualname__ = "SeededTransformersLLM"
    _SEEDED_CLASS = SeededTransformersLLM
    return SeededTransformersLLM


def __getattr__(name: str) -> Any:  # PEP 562: lets pickle find the lazily built class
    if name == "SeededTransformersLLM":
        return _seeded_transformers_llm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_llm(teacher: TeacherConfig, *, quiet: bool = True) -> LLM:
    """A distilabel LLM for `teacher` (not loaded: distilabel loads it in the worker)."""
    if teacher.kind == "openai":
        _import_distilabel()
        from distilabel.models.llms import OpenAILLM

        kwargs: dict[str, Any] = {}
        if teacher.base_url:
            kwargs["base_url"] = teacher.base_url
        return OpenAILLM(
            model=teacher.model,
            api_key=teacher.api_key or "EMPTY",
            timeout=teacher.timeout_s,
            max_retries=teacher.max_retries,
            generation_kwargs=teacher.generation_kwargs(),
            **kwargs,
        )
    cls = _seeded_transformers_llm_class()
    return cls(
        model=teacher.model,
        device=teacher.device,
        generation_kwargs=teacher.generation_kwargs(),
        seed=teacher.seed,
        quiet=quiet,
        num_threads=teacher.num_threads,
    )


# ---------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCounts:
    short_label: bool | None  # None: the classes are balanced enough, nothing to do
    n_real: int
    n_desirable: int
    n_undesirable: int
    n_needed: int  # rows that would bring the short class to majority / target_ratio
    n_cap: int  # most synthetic rows allowed by max_share
    n_target: int  # min(n_needed, n_cap)


def target_counts(n_desirable: int, n_undesirable: int, target_ratio: float = 1.0, max_share: float = 0.25) -> TargetCounts:
    """How many synthetic rows of which class: min(what balances, what the cap allows).

    s / (n + s) <= max_share  ⇔  s <= max_share / (1 - max_share) × n, n the real rows.
    """
    n_real = n_desirable + n_undesirable
    majority, minority = max(n_desirable, n_undesirable), min(n_desirable, n_undesirable)
    short_label = None if n_desirable == n_undesirable else n_desirable < n_undesirable
    # The epsilon keeps 0.25/0.75 × 300 at 100, not 99.99999 → 99.
    needed = max(0, math.floor(majority / target_ratio + 1e-9) - minority)
    cap = math.floor(max_share / (1 - max_share) * n_real + 1e-9)
    if short_label is None or needed == 0:
        return TargetCounts(None, n_real, n_desirable, n_undesirable, 0, cap, 0)
    return TargetCounts(short_label, n_real, n_desirable, n_undesirable, needed, cap, min(needed, cap))


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: a source row of the other class, and the id its output row will get."""

    row_id: str  # content_hash(source_row_id, signal, generation_index)
    rank: int  # position in the plan; apply_cap keeps the lowest ranks
    generation_index: int
    source_row_id: str
    source_record_id: str
    source_completion: str
    prompt: str
    prompt_messages: str | None
    week: str
    timestamp: pd.Timestamp
    conversation_id: str | None
    user_id: str | None
    source_model_version: str | None


@dataclass(frozen=True)
class SynthesisPlan:
    config: SynthesisConfig
    counts: TargetCounts
    signal: str | None
    n_eligible_prompts: int  # distinct prompts of the other class that can be used
    skipped: dict[str, int]  # source rows not usable, by reason
    ignored_synthetic: int  # synthetic rows in the input: neither counted nor used
    requests: tuple[GenerationRequest, ...]

    @property
    def short_label(self) -> bool | None:
        return self.counts.short_label

    @property
    def n_target(self) -> int:
        return self.counts.n_target

    @property
    def shortfall(self) -> int:
        """Target rows that cannot even be requested (too few distinct prompts)."""
        return max(0, self.counts.n_target - len(self.requests))

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers for run metadata."""
        c = self.counts
        return {
            "short_label": c.short_label, "signal": self.signal, "n_real": c.n_real,
            "n_desirable": c.n_desirable, "n_undesirable": c.n_undesirable,
            "n_needed": c.n_needed, "n_cap": c.n_cap, "n_target": c.n_target,
            "n_requests": len(self.requests), "n_eligible_prompts": self.n_eligible_prompts,
            "shortfall": self.shortfall, "skipped": dict(self.skipped),
            "ignored_synthetic": self.ignored_synthetic,
        }


def _conversation(prompt: str, prompt_messages: Any) -> tuple[str, list[dict[str, str]]]:
    """(system prompt or "", the rest of the conversation) of a row; ValueError if unusable."""
    if isinstance(prompt_messages, str) and prompt_messages.strip():
        try:
            messages = json.loads(prompt_messages)
        except json.JSONDecodeError as exc:
            raise ValueError(SynthesisReason.BAD_PROMPT_MESSAGES) from exc
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise ValueError(SynthesisReason.BAD_PROMPT_MESSAGES)
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    else:
        messages = [{"role": "user", "content": prompt}]
    system = ""
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise ValueError(SynthesisReason.NOT_ENDING_WITH_USER)
    return system, messages


def _opt(value: Any) -> str | None:
    return None if is_missing(value) else str(value)


def plan_synthesis(rows: pd.DataFrame, config: SynthesisConfig | None = None) -> SynthesisPlan:
    """The week's top-up plan for training rows in the contract schema (pure, deterministic).

    Source rows are the production rows of the *other* class (optionally only some signals)
    whose conversation ends with a user turn. They are grouped by prompt (prompt_messages
    when present, else prompt); each prompt is represented by its first row by
    (timestamp, row_id), and prompts are ranked by content_hash(seed, prompt), so the choice
    does not depend on row order. Requests take prompts in rank order, generation index 0
    for all of them first, then index 1, ... up to max_generations_per_prompt.
    """
    config = config or SynthesisConfig()
    # Synthetic rows already in the input (a rerun over mixed data) are neither real rows
    # for the counts nor sources: generating from generated text would compound its flaws.
    is_synth = (rows["source"] == SOURCE_SYNTHETIC).fillna(False).to_numpy(dtype=bool)
    real = rows[~is_synth]
    n_desirable = int(real["label"].astype(bool).sum())
    counts = target_counts(n_desirable, len(real) - n_desirable, config.target_ratio, config.max_share)
    ignored = int(is_synth.sum())
    if counts.short_label is None or counts.n_target == 0:
        return SynthesisPlan(config, counts, None, 0, {}, ignored, ())

    signal = SIGNAL_SYNTHETIC_IMPROVED if counts.short_label else SIGNAL_SYNTHETIC_DEGRADED
    sources = real[real["label"].astype(bool) != counts.short_label]
    if config.source_signals is not None:
        sources = sources[sources["signal"].isin(config.source_signals)]
    sources = sources.sort_values(["timestamp", "row_id"], kind="stable")

    skipped: Counter = Counter()
    first_by_prompt: dict[str, Any] = {}
    for row in sources.itertuples(index=False):
        try:
            _conversation(row.prompt, row.prompt_messages)
        except ValueError as exc:
            skipped[str(exc)] += 1
            continue
        key = _opt(row.prompt_messages) or str(row.prompt)
        first_by_prompt.setdefault(key, row)
    ranked = sorted(first_by_prompt, key=lambda k: (content_hash(config.seed, k), k))

    n_want = math.ceil(counts.n_target * config.overgeneration - 1e-9)
    n_requests = min(n_want, len(ranked) * config.max_generations_per_prompt)
    requests = []
    for i in range(n_requests):
        g, k = divmod(i, len(ranked))
        src = first_by_prompt[ranked[k]]
        requests.append(GenerationRequest(
            row_id=content_hash(str(src.row_id), signal, g),
            rank=i,
            generation_index=g,
            source_row_id=str(src.row_id),
            source_record_id=str(src.record_id),
            source_completion=str(src.completion),
            prompt=str(src.prompt),
            prompt_messages=_opt(src.prompt_messages),
            week=str(src.week),
            timestamp=src.timestamp,
            conversation_id=_opt(src.conversation_id),
            user_id=_opt(src.user_id),
            source_model_version=_opt(src.model_version),
        ))
    return SynthesisPlan(config, counts, signal, len(ranked), dict(sorted(skipped.items())), ignored, tuple(requests))


def teacher_messages(request: GenerationRequest, signal: str, config: SynthesisConfig | None = None) -> list[dict[str, str]]:
    """The chat sent to the teacher: our instruction as the system message, then the user's
    conversation (its own system message, if any, is folded into the instruction, because
    many chat templates accept only one leading system message)."""
    from jinja2 import Environment, StrictUndefined

    config = config or SynthesisConfig()
    template = config.improve_template if signal == SIGNAL_SYNTHETIC_IMPROVED else config.degrade_template
    system_prompt, conversation = _conversation(request.prompt, request.prompt_messages)
    # StrictUndefined: a typo in a configured template fails loudly instead of rendering "".
    instruction = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(template).render(
        response=request.source_completion, prompt=request.prompt, system_prompt=system_prompt,
    )
    return [{"role": "system", "content": instruction}, *conversation]


# ---------------------------------------------------------------------------------------
# Running distilabel, in a child interpreter
# ---------------------------------------------------------------------------------------

RESULT_FILE = "result.json"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the checkout root, above kto_pipeline/
# Appended, not prepended: the checkout root also holds top-level `assets`, `resources` and
# `tests` folders, which must not shadow anything. An installed kto_pipeline is found first;
# `_child_main` checks it is this very file.
_CHILD_ENTRY = (
    f"import sys; sys.path.append({str(_PACKAGE_ROOT)!r}); "
    "from kto_pipeline.curate.synthesis import _child_main; _child_main()"
)


@dataclass
class ChatGenerationRun:
    generations: dict[str, str | None]  # request_id → text (None: the LLM call failed)
    timings: dict[str, float]  # wall_s (parent), child_import_s, pipeline_s (inside the child)


def _pump(stream: Any, level: int, tail: deque) -> None:
    """Forward the child's console output (distilabel's log lines) to our logger."""
    for line in stream:
        line = line.rstrip()
        if line:
            tail.append(line)
            logger.log(level, "%s", line)


def _kill_group(proc: subprocess.Popen) -> None:
    """End the child and the distilabel workers it forked (its own process group)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_chat_generation(
    records: Sequence[Mapping[str, Any]],
    teacher: TeacherConfig,
    cache_dir: str | os.PathLike,
    *,
    log_level: str = "WARNING",
    keep_cache: bool = False,
    timeout_s: float | None = None,
) -> ChatGenerationRun:
    """Run LoadDataFromDicts → ChatGeneration over `records` ({"request_id", "messages"}).

    The pipeline runs in a fresh Python child (see `_child_main`) because distilabel forks its
    step workers from the process that calls `Pipeline.run`: after that process has used
    torch's OpenMP threads (an embedding or scoring step earlier in the same Dagster process,
    or another test under pytest), the forked worker deadlocks in its first parallel op
    (observed: gomp_team_barrier_wait_end in libgomp). A fresh child has never started that
    thread pool. It also keeps distilabel's process-wide changes (root logger handlers and
    level, a SIGINT handler it never restores, env vars, our patches) out of the caller.

    The request payload, api key included, goes over the child's stdin: never argv, env or
    disk. distilabel's cache, the child's working directory and its result file are a fresh
    folder inside `cache_dir`, deleted afterwards unless `keep_cache`. The child's console
    output (distilabel's log lines at `log_level` and above) is forwarded to this module's
    logger at that level.
    """
    started = time.perf_counter()
    if not records:
        return ChatGenerationRun({}, {"wall_s": 0.0})
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"log_level must be a logging level name, got {log_level!r}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="distilabel-", dir=cache_dir)).resolve()
    payload = json.dumps({
        "records": [{"request_id": str(r["request_id"]), "messages": list(r["messages"])} for r in records],
        "teacher": asdict(teacher),
        "run_dir": str(run_dir),
        "module_file": str(Path(__file__).resolve()),
    })
    env = dict(os.environ)
    env.update({
        "DISTILABEL_LOG_LEVEL": level,  # read by distilabel's setup_logging in the child and its workers
        "DISTILABEL_CACHE_DIR": str(run_dir),  # also covers a Pipeline rebuilt from YAML without cache_dir
        "COLUMNS": "200",  # Rich wraps log lines at 80 columns when not writing to a terminal
    })
    tail: deque = deque(maxlen=60)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_ENTRY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace", env=env, cwd=run_dir,
            start_new_session=True,  # its own process group: one killpg ends it and its workers
        )
        try:
            reader = threading.Thread(target=_pump, args=(proc.stdout, logging.getLevelName(level), tail), daemon=True)
            reader.start()
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died at startup; its exit code and output say why
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"synthetic generation did not finish within {timeout_s} s") from None
            reader.join(timeout=30)
        except BaseException:
            _kill_group(proc)  # also on KeyboardInterrupt / Dagster run termination
            raise
        if rc != 0:
            raise RuntimeError(f"synthetic generation failed (child exit code {rc}); its last output:\n" + "\n".join(tail))
        result_path = run_dir / RESULT_FILE
        if not result_path.is_file():
            raise RuntimeError(f"synthetic generation child exited without writing {RESULT_FILE}")
        result = json.loads(result_path.read_text(encoding="utf-8"))
        timings = {"wall_s": round(time.perf_counter() - started, 3), **result["timings"]}
        return ChatGenerationRun(result["generations"], timings)
    finally:
        if not keep_cache:
            shutil.rmtree(run_dir, ignore_errors=True)


def _no_distiset(*args: Any, **kwargs: Any) -> Any:
    """Stands in for distilabel's create_distiset: no datasets cache, no citation lookup."""
    from distilabel.distiset import Distiset

    return Distiset()


def _child_main() -> None:
    """The generation child: payload on stdin, result.json in the run folder.

    A throwaway process, so its patches are not undone:
    - `create_distiset` is replaced in both modules that call it (pipeline/local.py:255 at the
      end of every run, pipeline/base.py:398 on a cache hit). The real one loads the outputs
      with `datasets.load_dataset` (writes ~/.cache/huggingface/datasets) and calls
      `_grab_citations` (distiset.py:749), whose `get_bibtex` (utils/docstring.py:240) does an
      untimed `requests.get` to arxiv2bibtex.org for any step whose docstring cites arXiv.
    - `_grab_citations` itself is stubbed too, for any other path to a Distiset.
    The outputs are read from the leaf step's parquet files instead.
    """
    payload = json.loads(sys.stdin.read())
    if str(Path(__file__).resolve()) != payload["module_file"]:
        raise RuntimeError(f"the child imported {__file__}, the caller runs {payload['module_file']}")
    started = time.perf_counter()
    _import_distilabel()
    import distilabel.distiset
    import distilabel.pipeline.base
    import distilabel.pipeline.local
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    distilabel.pipeline.local.create_distiset = _no_distiset
    distilabel.pipeline.base.create_distiset = _no_distiset
    distilabel.distiset._grab_citations = lambda dag: []
    # distilabel 1.5.3 reads `model_fields` on instances, which pydantic >= 2.11 deprecates:
    # tens of thousands of warnings per run. The workers inherit the filter through fork.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"distilabel\.")
    imported = time.perf_counter()

    run_dir = Path(payload["run_dir"])
    teacher = TeacherConfig(**payload["teacher"])
    quiet = os.environ.get("DISTILABEL_LOG_LEVEL", "WARNING") != "DEBUG"
    with Pipeline(name=PIPELINE_NAME, cache_dir=run_dir) as pipeline:
        load = LoadDataFromDicts(name=LOAD_STEP, data=payload["records"], batch_size=teacher.batch_size)
        task = ChatGeneration(name=TEACHER_STEP, llm=build_llm(teacher, quiet=quiet), input_batch_size=teacher.batch_size)
        load >> task
    pipeline.run(use_cache=False)
    generations = _read_outputs(pipeline._cache_location["data"] / "steps_outputs" / TEACHER_STEP)
    result = {"generations": generations,
              "timings": {"child_import_s": round(imported - started, 3), "pipeline_s": round(time.perf_counter() - imported, 3)}}
    tmp = run_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(run_dir / RESULT_FILE)


def _read_outputs(out_dir: Path) -> dict[str, str | None]:
    import pyarrow.parquet as pq

    result: dict[str, str | None] = {}
    for path in sorted(out_dir.glob("*.parquet")):
        table = pq.read_table(path, columns=["request_id", "generation"])
        for rid, gen in zip(table.column("request_id").to_pylist(), table.column("generation").to_pylist()):
            result[rid] = gen
    return result


# ---------------------------------------------------------------------------------------
# Generated rows
# ---------------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    rows: pd.DataFrame  # ROW_DTYPES, plan order
    dropped: pd.DataFrame  # DROPPED_DTYPES
    stats: dict[str, Any]


def build_synthetic_rows(
    plan: SynthesisPlan, generations: Mapping[str, str | None], teacher_model: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract rows (and drops, with reasons) from {request row_id: generated text}.

    Text is stripped of surrounding whitespace; an empty result, a failed generation (None)
    or a request that never came back is dropped and counted, never silently lost.
    """
    rows, dropped = [], []
    for req in plan.requests:
        text = generations.get(req.row_id)
        reason = None
        if req.row_id not in generations:
            reason, detail = SynthesisReason.MISSING_OUTPUT, "no output for this request"
        elif text is None:
            reason, detail = SynthesisReason.GENERATION_FAILED, "the LLM returned no generation"
        elif not text.strip():
            reason, detail = SynthesisReason.EMPTY_GENERATION, f"{len(text)} whitespace characters"
        if reason is not None:
            dropped.append({"row_id": req.row_id, "source_row_id": req.source_row_id,
                            "generation_index": req.generation_index, "reason": reason, "detail": detail})
            continue
        rows.append({
            "row_id": req.row_id,
            "record_id": req.row_id,
            "week": req.week,
            "timestamp": req.timestamp,
            "prompt": req.prompt,
            "prompt_messages": req.prompt_messages,
            "completion": text.strip(),
            "label": plan.signal == SIGNAL_SYNTHETIC_IMPROVED,
            "signal": plan.signal,
            "source": SOURCE_SYNTHETIC,
            # Kept from the source row so conversation-grouped splits and per-user weighting
            # treat a synthetic row like the row it came from.
            "conversation_id": req.conversation_id,
            "user_id": req.user_id,
            "model_version": teacher_model,  # the model that wrote the completion
            "metadata": metadata_json({
                "teacher_model": teacher_model,
                "source_row_id": req.source_row_id,
                "source_record_id": req.source_record_id,
                "source_model_version": req.source_model_version,
                "generation_index": req.generation_index,
            }),
            "dump": None,
            "line": SYNTHETIC_LINE,
        })
    return frame_from_records(rows, ROW_DTYPES), frame_from_records(dropped, DROPPED_DTYPES)


def generate_synthetic(
    plan: SynthesisPlan,
    teacher: TeacherConfig,
    cache_dir: str | os.PathLike,
    *,
    log_level: str = "WARNING",
    keep_cache: bool = False,
    timeout_s: float | None = None,
) -> GenerationResult:
    """Generate the plan's requests with the teacher through distilabel; contract rows back.

    `cache_dir`: where distilabel may write (the Dagster run's storage); see
    `run_chat_generation` for how the run is isolated and what `log_level` controls.
    """
    records = [{"request_id": r.row_id, "messages": teacher_messages(r, plan.signal or "", plan.config)} for r in plan.requests]
    run = ChatGenerationRun({}, {"wall_s": 0.0})
    if records:
        logger.info("synthetic top-up: %d requests to %s", len(records), teacher.describe())
        run = run_chat_generation(records, teacher, cache_dir, log_level=log_level, keep_cache=keep_cache, timeout_s=timeout_s)
    rows, dropped = build_synthetic_rows(plan, run.generations, teacher.model)
    stats = {
        "n_requests": len(records),
        "n_rows": len(rows),
        "dropped": {str(k): int(v) for k, v in dropped["reason"].value_counts().sort_index().items()},
        "timings": run.timings,
        "teacher": teacher.describe(),
    }
    return GenerationResult(rows, dropped, stats)


# ---------------------------------------------------------------------------------------
# The cap
# ---------------------------------------------------------------------------------------


@dataclass
class CapResult:
    kept: pd.DataFrame  # ROW_DTYPES
    dropped: pd.DataFrame  # DROPPED_DTYPES, reason "over_cap"
    n_target: int


def apply_cap(generated: pd.DataFrame, plan: SynthesisPlan, real_rows: pd.DataFrame | None = None) -> CapResult:
    """Keep at most the plan's target of the (already redacted and deduplicated) generated
    rows, lowest plan rank first. With `real_rows` (e.g. the real rows after their own dedup)
    the target is recomputed from them with the plan's target_ratio and max_share."""
    n_target = plan.n_target
    if real_rows is not None:
        real = real_rows[~(real_rows["source"] == SOURCE_SYNTHETIC).fillna(False).to_numpy(dtype=bool)]
        n_des = int(real["label"].astype(bool).sum())
        c = target_counts(n_des, len(real) - n_des, plan.config.target_ratio, plan.config.max_share)
        n_target = c.n_target if c.short_label == plan.short_label else 0
    by_id = {r.row_id: r for r in plan.requests}
    unknown = sorted(set(generated["row_id"]) - set(by_id))
    if unknown:
        raise ValueError(f"{len(unknown)} generated rows are not in the plan, e.g. {unknown[0]}")
    if len(generated) and not (
        generated["source"].eq(SOURCE_SYNTHETIC).all()
        and generated["signal"].eq(plan.signal).all()
        and generated["label"].astype(bool).eq(bool(plan.short_label)).all()
    ):
        raise ValueError("generated rows must be synthetic rows of the plan's short class")
    order = generated["row_id"].map(lambda rid: by_id[rid].rank)
    ranked = generated.assign(_rank=order.to_numpy()).sort_values("_rank", kind="stable").drop(columns="_rank")
    kept, over = ranked.iloc[:n_target], ranked.iloc[n_target:]
    dropped = [{"row_id": rid, "source_row_id": by_id[rid].source_row_id,
                "generation_index": by_id[rid].generation_index, "reason": SynthesisReason.OVER_CAP,
                "detail": f"target {n_target} rows"} for rid in over["row_id"]]
    return CapResult(kept.reset_index(drop=True), frame_from_records(dropped, DROPPED_DTYPES), n_target)
