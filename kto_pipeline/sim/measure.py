"""Measurement: oracle (true) accuracy of a model on the fixed held-out prompts.

The held-out prompts never appear in traffic, so a gain here is generalisation from the
week's feedback, not memory of it. Every figure uses fixed seeds and the serving sampler's
common random numbers: the base model and each week's model are scored on identical draws
(the notes: weeks 3–4 gain 2–5 points against an SE of 1–1.5 at 2,000 samples, so unpaired
draws would blur the weekly trend).

`heldout_accuracy` is the headline (T=1, 1,000 prompts × 2 samples by default: what users
would see). `evaluate_model` adds greedy accuracy (what the model "believes") and accuracy on
carry prompts (where the carry_bug scenario's systematic error lives).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kto_pipeline.sim.serving import ModelRef, sample_answers
from kto_pipeline.sim.task import TaskSplit, accuracy, has_carry, task_split

EVAL_SEED = 1234  # apart from traffic seeds, and fixed: every model is scored on these draws
N_SAMPLES = 2000


def eval_prompts(heldout: Sequence[str], n_samples: int) -> list[str]:
    """`n_samples` prompts cycling through the held-out set (1,000 × 2 for 2,000)."""
    if n_samples < 1 or not heldout:
        raise ValueError("need ≥ 1 sample and a non-empty held-out set")
    return [heldout[i % len(heldout)] for i in range(n_samples)]


def heldout_accuracy(
    model_ref: ModelRef,
    n_samples: int = N_SAMPLES,
    temperature: float = 1.0,
    seed: int = EVAL_SEED,
    *,
    split: TaskSplit | None = None,
) -> float:
    """Share of right answers over `n_samples` held-out draws at `temperature`."""
    prompts = eval_prompts((split or task_split()).heldout, n_samples)
    return accuracy(prompts, sample_answers(model_ref, prompts, temperature, seed))


@dataclass(frozen=True)
class ModelReport:
    accuracy: float  # T=1 over n_samples held-out draws: the headline
    greedy_accuracy: float  # T=0, each held-out prompt once
    carry_accuracy: float  # T=1 draws on carry prompts only
    carry_greedy_accuracy: float  # T=0 on carry prompts only
    n_samples: int
    n_prompts: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _subset_accuracy(prompts: list[str], answers: list[str], keep: list[bool]) -> float:
    chosen = [(p, a) for p, a, k in zip(prompts, answers, keep) if k]
    return accuracy([p for p, _ in chosen], [a for _, a in chosen]) if chosen else float("nan")


def evaluate_model(
    model_ref: ModelRef,
    n_samples: int = N_SAMPLES,
    seed: int = EVAL_SEED,
    *,
    split: TaskSplit | None = None,
) -> ModelReport:
    """T=1 and greedy accuracy, overall and on carry prompts, on the held-out set."""
    t0 = time.monotonic()
    heldout = list((split or task_split()).heldout)
    prompts = eval_prompts(heldout, n_samples)
    sampled = sample_answers(model_ref, prompts, 1.0, seed)
    greedy = sample_answers(model_ref, heldout, 0.0, seed)
    carry_sampled = [has_carry(p) for p in prompts]
    carry_heldout = [has_carry(p) for p in heldout]
    return ModelReport(
        accuracy=accuracy(prompts, sampled),
        greedy_accuracy=accuracy(heldout, greedy),
        carry_accuracy=_subset_accuracy(prompts, sampled, carry_sampled),
        carry_greedy_accuracy=_subset_accuracy(heldout, greedy, carry_heldout),
        n_samples=n_samples,
        n_prompts=len(heldout),
        seconds=round(time.monotonic() - t0, 2),
    )
