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

distilabel 1.5.3 needs care to run inside a pipeline step: the pipeline runs in a fresh child
interpreter (torch's OpenMP pool and forked workers deadlock otherwise), with its cache in a
fresh folder under the caller's directory, no Distiset (no ~ caches, no citation lookups), its
console output forwarded to our logger, and the api_key passed over stdin only. The reasons are
in the docstring of `child`.

Modules: `config` (SynthesisConfig, TeacherConfig), `prompts` (the default teacher
instructions), `reasons` (why rows are skipped or dropped), `plan` (step 1 and the teacher's
chat), `llm` (distilabel LLMs), `child` (running distilabel in a child interpreter),
`generate` (step 2), `cap` (step 3), `screen` (redaction and dedup of generated rows, then
the cap).
"""

from kto_pipeline.curate.synthesis.cap import CapResult, apply_cap
from kto_pipeline.curate.synthesis.child import PIPELINE_NAME, ChatGenerationRun, run_chat_generation
from kto_pipeline.curate.synthesis.config import SynthesisConfig, TeacherConfig
from kto_pipeline.curate.synthesis.generate import GenerationResult, build_synthetic_rows, generate_synthetic
from kto_pipeline.curate.synthesis.llm import build_llm
from kto_pipeline.curate.synthesis.plan import (
    GenerationRequest,
    SynthesisPlan,
    TargetCounts,
    plan_synthesis,
    target_counts,
    teacher_messages,
)
from kto_pipeline.curate.synthesis.prompts import DEFAULT_DEGRADE_TEMPLATE, DEFAULT_IMPROVE_TEMPLATE
from kto_pipeline.curate.synthesis.reasons import DROPPED_DTYPES, SynthesisReason

__all__ = [
    "DEFAULT_DEGRADE_TEMPLATE",
    "DEFAULT_IMPROVE_TEMPLATE",
    "DROPPED_DTYPES",
    "PIPELINE_NAME",
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
