"""A production simulator: a tiny "production model", an oracle user, weekly feedback dumps.

It lets the pipeline be run end to end, week by week, on a task whose right answers are
known, so "did the weekly KTO fine-tune make the product better?" has a measured answer. A
plain library (no Dagster): the orchestration layer drives it.

The loop for one week (the feasibility notes' configuration, in
shared/notes/simulator-feasibility.md):

1. `build_base_model(scenario, cache_dir)` once: the tiny Llama trained on a corrupted
   corpus (scenarios: "carry_bug", "scarce_positives"); it is week 0's champion.
2. `split = task_split()`; `prompts = split.week_prompts(week_index, 1000)`: fresh traffic.
3. `traffic = simulate_week(champion, prompts, week, user=OracleUser(), seed=…)`: answers
   sampled at T=1, thumbs/edits/PII/repeats from the oracle user; `traffic.stats()` holds
   the true accuracy and the observed thumbs-up rate.
4. `send_week_through_capture(traffic.records, dumps_dir)` (what the main job does: the app's
   answers and the user's thumbs and edits through a real capture service on loopback), or
   `write_week_dump(traffic.records, dumps_dir, week)` (one contract-format dump): the week's
   dumps for the pipeline (ingest → redaction → dedup → balance → `train.train_kto` with
   `tiny_kto_recipe()`).
5. `heldout_accuracy(checkpoint)` / `evaluate_model(checkpoint)`: oracle accuracy on the
   fixed held-out prompts, on identical draws for every model.
6. Optional naive arm: `train_sft_on_positives(champion, rows, steps=…, output_dir=…)`.

Modules: `task` (prompts, split, tokenizer), `scenarios` (corrupted corpora), `base_model`
(pretraining and the cache), `serving` (the batched sampler), `users` (oracle user, weekly
records, dumps), `measure` (held-out accuracy), `sft` (the SFT-on-positives arm), `recipe`
(the recommended tiny-model KTO recipe), `runtime` (thread setting for small CPUs).
"""

from kto_pipeline.sim.base_model import base_model_dir, build_base_model, bundled_base, read_base_info
from kto_pipeline.sim.measure import EVAL_SEED, ModelReport, evaluate_model, heldout_accuracy
from kto_pipeline.sim.recipe import MAX_LENGTH, TINY_KTO_RECIPE, kto_steps, tiny_kto_recipe
from kto_pipeline.sim.runtime import torch_threads
from kto_pipeline.sim.scenarios import SCENARIOS, ModelShape, Scenario, get_scenario
from kto_pipeline.sim.serving import Answerer, ModelRef, ServedModel, load_served, sample_answers
from kto_pipeline.sim.sft import positive_examples, train_sft_on_positives
from kto_pipeline.sim.task import (
    TaskSplit,
    accuracy,
    build_tokenizer,
    has_carry,
    is_right,
    question_of,
    right_answer,
    task_split,
)
from kto_pipeline.sim.users import Ask, OracleUser, WeekTraffic, dump_name, simulate_week, write_week_dump

__all__ = [
    "EVAL_SEED",
    "MAX_LENGTH",
    "SCENARIOS",
    "TINY_KTO_RECIPE",
    "Answerer",
    "Ask",
    "ModelRef",
    "ModelReport",
    "ModelShape",
    "OracleUser",
    "Scenario",
    "ServedModel",
    "TaskSplit",
    "WeekTraffic",
    "accuracy",
    "base_model_dir",
    "build_base_model",
    "bundled_base",
    "build_tokenizer",
    "dump_name",
    "evaluate_model",
    "get_scenario",
    "has_carry",
    "heldout_accuracy",
    "is_right",
    "kto_steps",
    "load_served",
    "positive_examples",
    "question_of",
    "read_base_info",
    "right_answer",
    "sample_answers",
    "simulate_week",
    "task_split",
    "tiny_kto_recipe",
    "torch_threads",
    "train_sft_on_positives",
    "write_week_dump",
]
