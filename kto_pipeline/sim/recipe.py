"""Recommended KTO settings for the simulator's tiny model, as a `KTORecipe` dict.

From the feasibility study (carry_bug, +17 points held-out in week 1, +27–30 over 4 weeks):
full fine-tune with the reference precomputed (reference = last week's model), β = 2.0 (TRL's
0.1 barely moves a model this small), lr 5e-5 constant with no warmup (2e-4 is erratic,
3e-4 collapses), batch 32, 4 epochs (~150 steps for ~1,190 rows), fp32, no gradient
checkpointing.

Measured through `kto_pipeline.train.train_kto` (carry_bug base 0.349 at T=1; one week =
1,000 fresh prompts, 10% PII redacted by the pipeline, 1,186 rows after ingest, class weights
from `balance`, no dedup, seed 0): week 1 → 0.443 (+9.4 points; greedy 0.577 → 0.841,
carry-greedy 0.04 → 0.77), train_kto 13–33 s wall single-threaded on the shared 2-core
machine (151 steps). Chained 4 weeks: 0.443, 0.445, 0.529, 0.555 (+20.5); SFT on positives
at equal steps: 0.465, 0.526, 0.581, 0.595. Week 1 with other settings (no PII): this recipe
0.425, lr 1e-4 0.447 (but erratic when chained: 0.454, 0.453, 0.419, 0.428), β 1 0.391,
8 epochs 0.447. So week 1 gains about half the notes' +17 here; the 4-week gain of ~+20 is
in line with the notes' committed target (≥ +20 true), not with their +27–30.

Through the pipeline (`kto-pipeline simulate`, 1,500 prompts a week) the same recipe gave
+17 points after 4 weeks while the embedding-based curation (SemDeDup eps 0.05, DEITA
diversity 0.9) dropped ~20% of each week's rows as "duplicates" that were distinct sums, and
+20 to +21 (one week dipping 1.1 points) with those stages off. The simulation therefore
turns them off and trains on a two-week window (see `SimulationConfig`): 0.434, 0.561,
0.587, 0.593 (seed 0) and 0.456, 0.555, 0.610, 0.624 (seed 1) from a base of 0.349. Six
epochs on one week instead tripped the collapse guard in week 4, so the recipe stays at 4.

`max_length` is a cap, not a pad target (TRL pads each batch to its longest row): it is set
to fit the longest prompt the simulator can log *unredacted* plus the longest answer and
EOS, so no row is dropped even if redaction is skipped. Length bucketing stays on: PII-
wrapped prompts are ~4× longer than bare ones, and bucketing keeps them in their own blocks
instead of padding nearly every batch to their length (padding 2.5% instead of 70%; training
took half the time, with the same accuracy: 0.443 bucketed, 0.434 not).

SFT then KTO (`sft_first`, 2026-12-06, `python -m benchmarks.recipes`, with the simulated
teacher's top-up on): each week first fine-tunes on the window's desirable rows (thumbs-ups,
edits and the teacher's better answers) for 8 epochs with TRL's SFTTrainer, then runs the KTO
recipe above from that model, which is also its reference. carry_bug seed 0: 0.530, 0.607,
0.671, 0.671 (week 4's training tripped the collapse guard and was not promoted) against KTO
alone 0.474, 0.578, 0.594, 0.634 and SFT on thumbs-up 0.480, 0.582, 0.650, 0.704. 4 SFT epochs
instead of 8: 0.504, 0.576 in weeks 1-2, so 8 stays. The README has both scenarios and seeds.
Since 48674c6 the SFT stage batches by length (transformers' group_by_length, as
`length_bucketing` asks): on another machine the main job gave 0.524, 0.644, 0.690, 0.726 against
SFT on thumbs-up 0.480, 0.578, 0.656, 0.704 (benchmarks/results/recipes_default.md).

Class weights are not part of the recipe: they are recomputed each week from the row counts
(`kto_pipeline.curate.balance.kto_class_weights`, target ratio 7/6, close to the notes' 1.15).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kto_pipeline.sim.task import ALL_PROMPTS
from kto_pipeline.sim.users import longest_pii_prompt

MAX_ANSWER_TOKENS = 4  # up to 3 digits + EOS


def _round_up(value: int, multiple: int = 8) -> int:
    return -(-value // multiple) * multiple


def longest_logged_prompt_chars() -> int:
    """Characters (= tokens, before redaction) of the longest prompt users can log."""
    return max(len(ALL_PROMPTS[-1]), len(longest_pii_prompt("99+99=")))


MAX_LENGTH = _round_up(longest_logged_prompt_chars() + MAX_ANSWER_TOKENS)

TINY_KTO_RECIPE: dict[str, Any] = {
    "loss_type": "kto",
    "full_finetune": True,
    "precompute_ref_log_probs": True,
    "beta": 2.0,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "constant",
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 4.0,
    "max_length": MAX_LENGTH,
    "length_bucketing": True,
    "data_format": "plain",
    "bf16": False,
    "gradient_checkpointing": False,
    "save_steps": 10_000,  # a week is ~140 steps: no mid-run checkpoints to write
    "logging_steps": 5,
    "seed": 0,
    # SFT on the window's desirable rows first, then KTO from (and against) that model: ahead of
    # KTO alone and of SFT on thumbs-up in both scenarios (benchmarks/results/recipes.md).
    "sft_first": True,
    "sft_epochs": 8.0,
}


def tiny_kto_recipe(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The recommended recipe dict (for `KTORecipe.from_dict`), with `overrides` applied."""
    return {**TINY_KTO_RECIPE, **dict(overrides or {})}


def kto_steps(n_rows: int, recipe: Mapping[str, Any] | None = None) -> int:
    """Optimizer steps a KTO run of `n_rows` rows takes: the SFT arm's step budget.

    (Prefer the trained run's `TrainResult.global_step` when it exists: it counts rows left
    after TRL's too-long filter.)
    """
    recipe = tiny_kto_recipe(recipe)
    per_step = recipe["per_device_train_batch_size"] * recipe["gradient_accumulation_steps"]
    return math.ceil(n_rows / per_step) * math.ceil(recipe["num_train_epochs"])
