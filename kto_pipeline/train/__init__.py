"""One weekly KTO fine-tune: curated rows in, a Hugging Face checkpoint folder out.

What this module does
---------------------
`train_kto` takes a week's training rows (the contract's columns, already shuffled by the
balance step), a base model and optionally last week's checkpoint, and trains with TRL's
`KTOTrainer` (TRL 1.16). It writes `output_dir` as a Hugging Face-style folder (a PEFT adapter
or a full model, the tokenizer, a README.md model card with the data lineage, and
`kto_checkpoint.json`, a `models.manifest.CheckpointManifest`) and returns a `TrainResult` with
the final metrics and a health verdict. The library never imports Dagster: the orchestration
layer runs it in-process or through `python -m kto_pipeline.train --spec spec.json` (a
`TrainSpec`; also under `accelerate launch`), and receives live metrics through the `on_log`
callable.

Decisions (and why)
-------------------
* **Data format.** One format per dataset, chosen once: *conversational* when any row has
  `prompt_messages` and the tokenizer has a chat template (prompt = the message list,
  completion = one assistant message; rows without messages become one user message), else
  *plain strings* (the rendered `prompt` text; TRL appends EOS to the completion). Mixing both
  in one `datasets.Dataset` is impossible (TRL decides the format from the first row), and
  rendering every row through the same path keeps training and serving alike.
* **Order and KL pairs.** TRL never shuffles and builds its KL (z0) pairs by rotating
  completions by +1 inside consecutive blocks of `per_device_train_batch_size` rows. The rows
  arrive shuffled; with `length_bucketing` we sort them by token length, cut full blocks of
  that size, and shuffle whole blocks with the seed (the remainder stays last). Each
  micro-batch is then one block of similar lengths: the rotation still pairs rows inside the
  block (a valid z0 estimate) and padding drops.
* **Too-long prompts.** Rows whose prompt alone reaches `max_length` are dropped here, with
  TRL's own tokenisation, before bucketing: TRL would otherwise drop them after our blocks were
  cut and shift every block boundary. They are counted in the result.
* **Reference model = the init model** (see `policy`): the base with the adapter disabled for
  a fresh LoRA, TRL's frozen "ref" copy of last week's adapter for a LoRA chain, the loaded
  init model for a full fine-tune. The first log confirms it: at the initial weights rewards
  are ~0 and the loss is 0.5 × class weights. Only the "default" adapter is saved.
* **Resume** (see `resume`): Trainer checkpoints in `work_dir/trainer` next to a fingerprint
  in `work_dir/run.json`; the same fingerprint resumes from the newest complete checkpoint,
  another starts fresh. The prepared dataset and TRL's caches live under `work_dir/data`.
* **Health** (see `health`): a `TrainerCallback` forwards every log to `on_log`, stops a
  collapsing run (both rewards falling together, or a non-finite loss), and the result and
  manifest say so with the evidence.
* **Launching.** `python -m kto_pipeline.train --spec spec.json` runs one process;
  `accelerate launch --multi_gpu --num_processes N -m kto_pipeline.train --spec spec.json`
  runs N data-parallel ranks (NCCL on GPUs; gloo on CPU when no GPU is present or the spec
  says "device": "cpu"). `accelerate launch --cpu` alone starts a single process unless
  mpirun is installed. Every rank trains; only rank 0 writes the folder and the result.
* **Atomic output** (see `output`). The folder is written beside `output_dir` and renamed at
  the end, so a crash never leaves a folder that looks finished.

Layout
------
`recipe` (KTORecipe), `examples` (rows → TRL examples, shared with the evaluation), `data`
(records in training order), `resume` (fingerprint, run.json, checkpoints), `policy` (model
and reference), `health` (collapse, reference check, live logs), `result` (TrainResult),
`card` and `output` (the checkpoint folder), `trainer` (train_kto), `spec` (TrainSpec,
run_spec and the `--spec` entry point; `__main__` runs it).
"""

from kto_pipeline.train.card import model_card
from kto_pipeline.train.data import (
    PreparedData,
    data_summary,
    length_bucket_order,
    padding_fraction,
    prepare_records,
    rows_to_records,
    token_lengths,
)
from kto_pipeline.train.examples import DATA_FORMATS, choose_data_format, trl_example
from kto_pipeline.train.health import CollapseDetector, LogCallback, make_health_callback, reference_check
from kto_pipeline.train.output import LOG_HISTORY_FILE
from kto_pipeline.train.policy import load_policy
from kto_pipeline.train.recipe import KTORecipe, resolve_recipe
from kto_pipeline.train.result import FINAL_METRIC_KEYS, TrainResult
from kto_pipeline.train.resume import (
    DATA_DIR,
    FORMAT_VERSION,
    RUN_FILE,
    TRAINER_DIR,
    latest_checkpoint,
    prepare_work_dir,
    run_fingerprint,
)
from kto_pipeline.train.spec import TrainLineage, TrainSpec, main, print_log, run_spec
from kto_pipeline.train.trainer import kto_config, train_kto

__all__ = [
    "DATA_DIR",
    "DATA_FORMATS",
    "FINAL_METRIC_KEYS",
    "FORMAT_VERSION",
    "LOG_HISTORY_FILE",
    "RUN_FILE",
    "TRAINER_DIR",
    "CollapseDetector",
    "KTORecipe",
    "LogCallback",
    "PreparedData",
    "TrainLineage",
    "TrainResult",
    "TrainSpec",
    "choose_data_format",
    "data_summary",
    "kto_config",
    "latest_checkpoint",
    "length_bucket_order",
    "load_policy",
    "main",
    "make_health_callback",
    "model_card",
    "padding_fraction",
    "prepare_records",
    "prepare_work_dir",
    "print_log",
    "reference_check",
    "resolve_recipe",
    "rows_to_records",
    "run_fingerprint",
    "run_spec",
    "token_lengths",
    "train_kto",
    "trl_example",
]
