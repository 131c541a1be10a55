"""The week's top-up plan (pure): how many rows of which class, from which source prompts, and
the chat each request sends to the teacher."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.curate.synthesis.config import SynthesisConfig
from kto_pipeline.curate.synthesis.reasons import SynthesisReason
from kto_pipeline.ingest.contract import (
    SIGNAL_SYNTHETIC_DEGRADED,
    SIGNAL_SYNTHETIC_IMPROVED,
    SOURCE_SYNTHETIC,
    content_hash,
)

__all__ = [
    "GenerationRequest",
    "SynthesisPlan",
    "TargetCounts",
    "plan_synthesis",
    "target_counts",
    "teacher_messages",
]


@dataclass(frozen=True)
class TargetCounts:
    short_label: bool | None  # None: the classes are balanced enough, nothing to do
    n_real: int
    n_desirable: int
    n_undesirable: int
    n_needed: int  # rows that would bring the short class to majority / target_ratio
    n_cap: int  # most synthetic rows allowed by max_share
    n_target: int  # min(n_needed, n_cap)


def target_counts(
    n_desirable: int, n_undesirable: int, target_ratio: float = 1.0, max_share: float = 0.25
) -> TargetCounts:
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
            "short_label": c.short_label,
            "signal": self.signal,
            "n_real": c.n_real,
            "n_desirable": c.n_desirable,
            "n_undesirable": c.n_undesirable,
            "n_needed": c.n_needed,
            "n_cap": c.n_cap,
            "n_target": c.n_target,
            "n_requests": len(self.requests),
            "n_eligible_prompts": self.n_eligible_prompts,
            "shortfall": self.shortfall,
            "skipped": dict(self.skipped),
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
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
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
        requests.append(
            GenerationRequest(
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
            )
        )
    return SynthesisPlan(config, counts, signal, len(ranked), dict(sorted(skipped.items())), ignored, tuple(requests))


def teacher_messages(
    request: GenerationRequest, signal: str, config: SynthesisConfig | None = None
) -> list[dict[str, str]]:
    """The chat sent to the teacher: our instruction as the system message, then the user's
    conversation (its own system message, if any, is folded into the instruction, because
    many chat templates accept only one leading system message)."""
    from jinja2 import Environment, StrictUndefined

    config = config or SynthesisConfig()
    template = config.improve_template if signal == SIGNAL_SYNTHETIC_IMPROVED else config.degrade_template
    system_prompt, conversation = _conversation(request.prompt, request.prompt_messages)
    # StrictUndefined: a typo in a configured template fails loudly instead of rendering "".
    instruction = (
        Environment(undefined=StrictUndefined, keep_trailing_newline=True)
        .from_string(template)
        .render(
            response=request.source_completion,
            prompt=request.prompt,
            system_prompt=system_prompt,
        )
    )
    return [{"role": "system", "content": instruction}, *conversation]
