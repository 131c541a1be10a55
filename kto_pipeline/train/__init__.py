"""One weekly KTO fine-tune: curated rows in, a Hugging Face checkpoint folder out.

What this module does
---------------------
`train_kto` takes a week's training rows (the contract's columns, already shuffled by the
balance step), a base model and optionally last week's checkpoint, and trains with TRL's
`KTOTrainer` (TRL 1.16). It writes `output_dir` as a Hugging Face-style folder (a PEFT adapter
or a full model, the tokenizer, a README.md model card with the data lineage, and
`kto_checkpoint.json` through `checkpoints.write_manifest`) and returns a `TrainResult` with
the final metrics and a health verdict. The library never imports Dagster: the orchestration
layer runs it in-process or through `python -m kto_pipeline.train --spec spec.json`
(also under `accelerate launch`), and receives live metrics through the `on_log` callable.

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
* **Reference model = the init model.** Fresh LoRA: the reference is the base with the
  adapter disabled. A LoRA chain (init_from = last week's adapter): we load base + adapter as
  trainable and pass the `PeftModel`; TRL 1.16 then copies the adapter into a frozen "ref"
  adapter and computes the reference with it, so the reference is last week's model, not the
  bare base. We check that the copy exists (else we stop) and the first log confirms it: at
  the initial weights rewards are ~0 and the loss is 0.5 × class weights. Full fine-tune: the
  reference is the loaded init model, precomputed before the first step. Only the "default"
  adapter is saved.
* **Resume.** Trainer checkpoints live in `work_dir/trainer`, next to `work_dir/run.json`
  holding a fingerprint of the prepared data + recipe + models + weights. A later call with the
  same fingerprint resumes from the newest complete checkpoint (same final step count as an
  uninterrupted run); another fingerprint clears our subfolders of `work_dir` and starts
  fresh. The prepared dataset is saved under `work_dir/data`, so TRL's tokenisation and its
  reference log-prob precompute are cached there (not in ~/.cache) and reused on resume.
* **Health.** A `TrainerCallback` forwards every log to `on_log` and watches for collapse:
  desirable and undesirable rewards falling together (with the desirable reward below zero)
  for `collapse_patience` consecutive logs, or a non-finite loss. It stops training
  (`control.should_training_stop`), and the result and manifest say so with the evidence.
* **Launching.** `python -m kto_pipeline.train --spec spec.json` runs one process;
  `accelerate launch --multi_gpu --num_processes N -m kto_pipeline.train --spec spec.json`
  runs N data-parallel ranks (NCCL on GPUs; gloo on CPU when no GPU is present or the spec
  says "device": "cpu"). `accelerate launch --cpu` alone starts a single process unless
  mpirun is installed. Every rank trains; only rank 0 writes the folder and the result.
* **Atomic output.** The folder is written beside `output_dir` and renamed at the end, so a
  crash never leaves a folder that looks finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.train.examples import choose_data_format, trl_example
from kto_pipeline.models.checkpoints import (
    MANIFEST,
    canonical_adapter_config,
    load_causal_lm,
    load_tokenizer,
    read_manifest,
    replace_folder,
    write_manifest,
)

# Telemetry pings from TRL's rank 0 are never wanted; HF_HUB_OFFLINE is left to the caller.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

FORMAT_VERSION = 1  # bump when data preparation changes what a fingerprint stands for
RUN_FILE = "run.json"
TRAINER_DIR = "trainer"
DATA_DIR = "data"
LOG_HISTORY_FILE = "log_history.json"
FINAL_METRIC_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl", "grad_norm",
                     "logps/chosen", "logps/rejected", "entropy", "learning_rate", "num_tokens")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

LogCallback = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------


@dataclass
class KTORecipe:
    """Everything that decides how a week trains. Defaults are the paper's / TRL's values.

    Override from a dict with `KTORecipe.from_dict({...})` (unknown keys raise: a typo in the
    Dagster config must not silently fall back to a default).
    """

    loss_type: str = "kto"  # or "apo_zero_unpaired" (no KL pass)
    beta: float = 0.1
    learning_rate: float = 5e-6
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # LoRA (default) or full fine-tune
    full_finetune: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05  # note: TRL's disable_dropout (default True) also zeroes this
    lora_target_modules: str | list[str] = "all-linear"  # PEFT never includes lm_head here
    # Batching and length
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    num_train_epochs: float = 1.0
    max_steps: int | None = None
    max_length: int = 1024
    length_bucketing: bool = True
    data_format: str = "auto"  # "auto" | "conversational" | "plain"
    # Reference model and memory/speed levers
    precompute_ref_log_probs: bool = True
    precompute_ref_batch_size: int | None = None
    gradient_checkpointing: bool = False  # only when memory needs it (~20% slower)
    bf16: bool | None = None  # None: when CUDA supports it (never on CPU)
    model_dtype: str = "auto"  # "auto": fp32 weights for full FT, bf16 frozen base for LoRA under bf16
    disable_dropout: bool = True
    # Checkpoints, logging, reproducibility
    save_steps: int = 50
    save_total_limit: int = 2
    keep_checkpoints: bool = False  # remove work_dir/trainer after a finished run
    logging_steps: int = 5
    seed: int = 0
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = True
    dataset_num_proc: int | None = None
    # Health
    collapse_patience: int = 3
    collapse_min_drop: float = 0.05  # nats of log-ratio per log (see CollapseDetector)
    stop_on_collapse: bool = True
    reference_check_tolerance: float = 0.05  # max |reward| at the initial weights
    # Escape hatch: passed verbatim to KTOConfig (e.g. {"optim": "adamw_torch_fused"})
    extra_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any] | None = None, base: KTORecipe | None = None) -> KTORecipe:
        base = base or cls()
        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; known: {sorted(known)}")
        recipe = dataclasses.replace(base, **overrides)
        recipe.validate()
        return recipe

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.loss_type not in ("kto", "apo_zero_unpaired"):
            raise ValueError(f"loss_type must be 'kto' or 'apo_zero_unpaired', got {self.loss_type!r}")
        if self.loss_type == "kto" and self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be ≥ 2: KTO estimates z0 from pairs inside a micro-batch")
        if self.data_format not in ("auto", "conversational", "plain"):
            raise ValueError(f"data_format must be auto, conversational or plain, got {self.data_format!r}")
        targets = [self.lora_target_modules] if isinstance(self.lora_target_modules, str) else list(self.lora_target_modules)
        if "lm_head" in targets:
            raise ValueError("LoRA on lm_head is not supported (TRL computes log-probs from lm_head.weight directly)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must lie in [0, 1)")
        if self.collapse_patience < 1:
            raise ValueError("collapse_patience must be ≥ 1")

    @property
    def kind(self) -> str:
        return "full" if self.full_finetune else "lora"

    def fingerprint_dict(self) -> dict[str, Any]:
        """The fields that change what is trained (logging and housekeeping are left out)."""
        skip = {"logging_steps", "keep_checkpoints", "save_total_limit", "dataloader_num_workers",
                "dataloader_pin_memory", "dataset_num_proc", "stop_on_collapse", "reference_check_tolerance"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}


def resolve_recipe(recipe: KTORecipe | Mapping[str, Any] | None) -> KTORecipe:
    if recipe is None:
        return KTORecipe()
    if isinstance(recipe, KTORecipe):
        recipe.validate()
        return recipe
    return KTORecipe.from_dict(recipe)


# --------------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """TRL-ready records in training order, plus what preparation did to them."""

    records: list[dict[str, Any]]  # {prompt, completion, label} in the order TRL will train
    data_format: str  # "conversational" | "plain"
    source_index: list[int]  # position of each record in the input frame
    lengths: list[int]  # prompt+completion tokens (capped at max_length)
    dropped_prompt_too_long: int
    padding_fraction: float  # pad share of the main sequences in per-device batches, as ordered
    padding_fraction_unbucketed: float  # the same in the incoming order


def rows_to_records(rows: pd.DataFrame, data_format: str) -> list[dict[str, Any]]:
    """Contract rows → TRL unpaired-preference records in one format."""
    missing = {"prompt", "completion", "label"} - set(rows.columns)
    if missing:
        raise ValueError(f"training rows lack column(s) {sorted(missing)}")
    return [trl_example(row, data_format) for row in rows.to_dict("records")]


def token_lengths(records: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(prompt tokens, prompt+completion tokens) per record, tokenised exactly as TRL 1.16 does.

    Uses TRL's own helpers so that our too-long filter agrees with the one TRL applies later.
    """
    from trl.data_utils import _tokenize, common_prefix_length  # TRL's tokenisation, pinned 1.16

    eos = tokenizer.eos_token or ""
    prompt_lens, total_lens = [], []
    for rec in records:
        if isinstance(rec["prompt"], list):
            prompt_ids = _tokenize(tokenizer, rec["prompt"], add_generation_prompt=True)["input_ids"]
            full_ids = _tokenize(tokenizer, rec["prompt"] + rec["completion"])["input_ids"]
        else:
            completion = rec["completion"] if rec["completion"].endswith(eos) else rec["completion"] + eos
            prompt_ids = _tokenize(tokenizer, rec["prompt"])["input_ids"]
            full_ids = _tokenize(tokenizer, rec["prompt"] + completion)["input_ids"]
        plen = common_prefix_length(prompt_ids, full_ids)
        prompt_lens.append(plen)
        total = len(full_ids) if max_length is None else min(len(full_ids), max_length)
        total_lens.append(total)
    return prompt_lens, total_lens


def length_bucket_order(lengths: Sequence[int], block_size: int, seed: int) -> list[int]:
    """A permutation of range(len(lengths)): blocks of `block_size` similar lengths, blocks shuffled.

    Sorting is stable, so equal lengths keep their incoming (already shuffled) order. The
    remainder (fewer than `block_size` rows) stays at the end, so every block stays aligned with
    TRL's micro-batches and KL rotation blocks.
    """
    if block_size < 1:
        raise ValueError("block_size must be ≥ 1")
    by_length = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n_full = len(by_length) // block_size * block_size
    blocks = [by_length[i : i + block_size] for i in range(0, n_full, block_size)]
    random.Random(seed).shuffle(blocks)
    return [i for block in blocks for i in block] + by_length[n_full:]


def padding_fraction(lengths: Sequence[int], block_size: int) -> float:
    """Share of pad tokens when consecutive `block_size` rows are padded to their longest."""
    padded = sum(max(lengths[i : i + block_size]) * len(lengths[i : i + block_size]) for i in range(0, len(lengths), block_size))
    return 0.0 if padded == 0 else 1.0 - sum(lengths) / padded


def prepare_records(rows: pd.DataFrame, tokenizer: Any, recipe: KTORecipe, *, bucket: bool | None = None) -> PreparedData:
    """Rows → records in training order: format, too-long drop, optional length bucketing."""
    data_format = choose_data_format(rows, tokenizer, recipe.data_format)
    records = rows_to_records(rows, data_format)
    prompt_lens, total_lens = token_lengths(records, tokenizer, recipe.max_length)
    keep = [i for i, plen in enumerate(prompt_lens) if plen < recipe.max_length]
    dropped = len(records) - len(keep)
    lengths = [total_lens[i] for i in keep]
    block = recipe.per_device_train_batch_size
    unbucketed = padding_fraction(lengths, block)
    order = list(range(len(keep)))
    if recipe.length_bucketing if bucket is None else bucket:
        order = length_bucket_order(lengths, block, recipe.seed)
    ordered_lengths = [lengths[j] for j in order]
    return PreparedData(
        records=[records[keep[j]] for j in order],
        data_format=data_format,
        source_index=[keep[j] for j in order],
        lengths=ordered_lengths,
        dropped_prompt_too_long=dropped,
        padding_fraction=padding_fraction(ordered_lengths, block),
        padding_fraction_unbucketed=unbucketed,
    )


def data_summary(rows: pd.DataFrame, prepared: PreparedData) -> dict[str, Any]:
    """Row counts per class, source, signal and week of the rows actually trained."""
    used = rows.iloc[prepared.source_index]
    labels = used["label"].astype(bool)

    def counts(col: str) -> dict[str, int]:
        if col not in used.columns:
            return {}
        return {str(k): int(v) for k, v in sorted(Counter(used[col].fillna("unknown").astype(str)).items())}

    return {
        "rows_in": int(len(rows)),
        "rows": int(len(used)),
        "desirable": int(labels.sum()),
        "undesirable": int((~labels).sum()),
        "dropped_prompt_too_long": prepared.dropped_prompt_too_long,
        "per_source": counts("source"),
        "per_signal": counts("signal"),
        "per_week": counts("week"),
        "data_format": prepared.data_format,
        "padding_fraction": round(prepared.padding_fraction, 4),
        "padding_fraction_unbucketed": round(prepared.padding_fraction_unbucketed, 4),
        "tokens": int(sum(prepared.lengths)),
    }


# --------------------------------------------------------------------------------------------
# Health: collapse detection and live logs
# --------------------------------------------------------------------------------------------


class CollapseDetector:
    """Flags "desirable and undesirable rewards fall together" (the notes' LR-too-high sign).

    A train log counts as falling when both `rewards/chosen` and `rewards/rejected` are more than
    `min_drop` nats of log-ratio (β·min_drop in reward units) below the previous train log and
    `rewards/chosen` is negative (healthy runs can let both drift down while the desirable
    reward stays above the reference). `patience` consecutive falling logs mean collapse. A
    non-finite loss or reward is divergence, at once. The floor is in log-ratio units so one
    setting serves β = 0.1 and β = 2: the first steps of a healthy run often let both rewards
    slip by hundredths of a nat per log, a collapse drops them by tenths or more.
    """

    def __init__(self, patience: int = 3, min_drop: float = 0.0, beta: float = 1.0) -> None:
        self.patience = patience
        self.min_drop = min_drop * beta
        self.previous: dict[str, float] | None = None
        self.streak: list[dict[str, float]] = []
        self.collapsed = False
        self.diverged = False
        self.evidence: list[dict[str, float]] = []

    def update(self, step: int, logs: Mapping[str, Any]) -> bool:
        """Feed one log; True once the run is unhealthy (it stays so)."""
        if self.collapsed or self.diverged:
            return True
        values = {k: logs[k] for k in ("loss", "rewards/chosen", "rewards/rejected") if isinstance(logs.get(k), (int, float))}
        if any(not math.isfinite(v) for v in values.values()):
            self.diverged = True
            self.evidence = [{"step": step, **values}]
            return True
        if "rewards/chosen" not in values or "rewards/rejected" not in values:
            return False
        point = {"step": step, "rewards/chosen": float(values["rewards/chosen"]), "rewards/rejected": float(values["rewards/rejected"])}
        prev = self.previous
        self.previous = point
        falling = (
            prev is not None
            and point["rewards/chosen"] < prev["rewards/chosen"] - self.min_drop
            and point["rewards/rejected"] < prev["rewards/rejected"] - self.min_drop
            and point["rewards/chosen"] < 0
        )
        if not falling:
            self.streak = []
            return False
        if not self.streak:
            self.streak = [prev]
        self.streak.append(point)
        if len(self.streak) - 1 >= self.patience:
            self.collapsed = True
            self.evidence = list(self.streak)
        return self.collapsed

    def report(self) -> dict[str, Any]:
        reason = "diverged (non-finite loss or reward)" if self.diverged else (
            f"desirable and undesirable rewards fell together for {self.patience} consecutive logs" if self.collapsed else None)
        return {"collapsed": self.collapsed or self.diverged, "reason": reason, "evidence": self.evidence}


def _make_health_callback(detector: CollapseDetector, on_log: LogCallback | None, stop_on_collapse: bool):
    """A TrainerCallback (built lazily: transformers is imported only when training)."""
    from transformers import TrainerCallback

    class HealthCallback(TrainerCallback):
        """Forwards logs to `on_log` (rank 0) and stops training on collapse (every rank).

        Logged values are already gathered across ranks, so every rank takes the same decision
        and no rank is left waiting in a collective.
        """

        def on_train_begin(self, args, state, control, **kwargs):
            # On resume the history up to the checkpoint comes back in state.log_history.
            for entry in state.log_history:
                detector.update(int(entry.get("step", 0)), entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if on_log is not None and state.is_world_process_zero:
                on_log({"step": int(state.global_step), "epoch": state.epoch, **logs})
            if "eval_loss" in logs or "train_runtime" in logs:
                return control
            if detector.update(int(state.global_step), logs) and stop_on_collapse:
                control.should_training_stop = True
            return control

    return HealthCallback()


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    output_dir: str
    kind: str  # "lora" | "full"
    base_model: str
    init_from: str | None
    global_step: int
    resumed_from_step: int | None
    collapsed: bool
    health: dict[str, Any]  # {"healthy", "problems", "collapse": {...}, "reference_check": {...}}
    final_metrics: dict[str, float]
    initial_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    data: dict[str, Any]
    timings: dict[str, float]  # seconds: prepare, setup (incl. reference precompute), train, save, total
    fingerprint: str
    reused: bool = False  # True when output_dir already held this exact training
    log_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return bool(self.health.get("healthy"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Work dir, fingerprint, resume
# --------------------------------------------------------------------------------------------


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def _model_identity(ref: str | None) -> Any:
    """What a model reference stands for: a checkpoint's manifest fingerprint, else the string."""
    if ref is None:
        return None
    manifest = read_manifest(ref)
    if manifest:
        return {"ref": str(ref), "fingerprint": manifest.get("fingerprint"), "global_step": manifest.get("global_step")}
    return str(ref)


def run_fingerprint(train: PreparedData, eval_data: PreparedData | None, recipe: KTORecipe, base_model: str,
                    init_from: str | None, desirable_weight: float, undesirable_weight: float) -> str:
    import trl

    return _sha({
        "format_version": FORMAT_VERSION,
        "trl": trl.__version__,
        "train": _sha(train.records),
        "eval": _sha(eval_data.records) if eval_data else None,
        "recipe": recipe.fingerprint_dict(),
        "base_model": str(base_model),
        "init_from": _model_identity(init_from),
        "weights": [float(desirable_weight), float(undesirable_weight)],
    })


def _complete_checkpoint(folder: Path, step: int) -> bool:
    """Trainer writes trainer_state.json last; a process killed while writing it (SIGKILL, OOM)
    leaves it empty or cut short, and resuming from that folder would fail on every retry."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def latest_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete Trainer checkpoint (trainer_state.json is written last)."""
    if not trainer_dir.is_dir():
        return None
    found = []
    for child in trainer_dir.iterdir():
        m = _CHECKPOINT.match(child.name)
        if m and child.is_dir() and _complete_checkpoint(child, int(m.group(1))):
            found.append((int(m.group(1)), child))
    return max(found)[1] if found else None


def _read_run_file(run_file: Path) -> dict[str, Any] | None:
    try:
        previous = json.loads(run_file.read_text())
    except (OSError, ValueError):  # missing, or cut short by a killed process: start fresh
        return None
    return previous if isinstance(previous, dict) else None


def prepare_work_dir(work_dir: Path, fingerprint: str) -> Path | None:
    """Keep `work_dir` for the same fingerprint (returns a checkpoint to resume), else clear ours."""
    work_dir.mkdir(parents=True, exist_ok=True)
    run_file = work_dir / RUN_FILE
    previous = _read_run_file(run_file)
    if previous and previous.get("fingerprint") == fingerprint:
        return latest_checkpoint(work_dir / TRAINER_DIR)
    # Only the subfolders this module creates are removed: the caller owns the rest.
    for name in (TRAINER_DIR, DATA_DIR):
        shutil.rmtree(work_dir / name, ignore_errors=True)
    tmp = run_file.with_name(run_file.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "created": time.time()}, indent=1))
    tmp.replace(run_file)  # atomic: a kill never leaves a half-written run.json
    return None


# --------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------


def _cuda_bf16(device: str | None) -> bool:
    import torch

    if device is not None and not str(device).startswith("cuda"):
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _model_dtype(recipe: KTORecipe, bf16: bool):
    import torch

    if recipe.model_dtype != "auto":
        return getattr(torch, recipe.model_dtype)
    # Full FT keeps fp32 master weights (autocast does bf16 compute); a frozen LoRA base
    # gains nothing from fp32 copies, so it is held in bf16 when bf16 is on.
    return torch.bfloat16 if bf16 and not recipe.full_finetune else torch.float32


def _check_init(init_from: str | None, base_model: str, recipe: KTORecipe) -> dict[str, Any] | None:
    if init_from is None:
        return None
    manifest = read_manifest(init_from)
    if recipe.full_finetune:
        if manifest and manifest.get("kind") == "lora":
            raise ValueError(f"full fine-tune cannot continue from the LoRA checkpoint {init_from}; merge it first")
        return manifest
    if not manifest or manifest.get("kind") != "lora":
        raise ValueError(f"a LoRA week continues from a LoRA checkpoint; {init_from} has no LoRA {MANIFEST}")
    if str(manifest.get("base_model")) != str(base_model):
        raise ValueError(f"{init_from} is an adapter on {manifest.get('base_model')!r}, not on {base_model!r}")
    return manifest


def load_policy(base_model: str, init_from: str | None, recipe: KTORecipe, dtype: Any):
    """(model, peft_config): the model to train and the LoRA config TRL should wrap it with.

    Fresh LoRA returns the base and a LoraConfig (TRL wraps it; reference = adapter disabled).
    A LoRA chain returns a trainable PeftModel with last week's adapter (TRL adds the frozen
    "ref" copy). Full FT returns the init model (or the base).
    """
    if recipe.full_finetune:
        return load_causal_lm(init_from or base_model, dtype=dtype, trainable=True), None
    if init_from is not None:
        return load_causal_lm(init_from, dtype=dtype, trainable=True), None
    from peft import LoraConfig

    model = load_causal_lm(base_model, dtype=dtype, trainable=True)
    config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                        target_modules=recipe.lora_target_modules, task_type="CAUSAL_LM", bias="none")
    return model, config


# --------------------------------------------------------------------------------------------
# Trainer assembly
# --------------------------------------------------------------------------------------------


def kto_config(recipe: KTORecipe, *, trainer_dir: Path, use_cpu: bool, bf16: bool, desirable_weight: float,
               undesirable_weight: float):
    from trl import KTOConfig

    args: dict[str, Any] = dict(
        output_dir=str(trainer_dir),
        loss_type=recipe.loss_type,
        beta=recipe.beta,
        desirable_weight=float(desirable_weight),
        undesirable_weight=float(undesirable_weight),
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        per_device_eval_batch_size=recipe.per_device_eval_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps if recipe.max_steps is not None else -1,
        max_length=recipe.max_length,
        precompute_ref_log_probs=recipe.precompute_ref_log_probs,
        precompute_ref_batch_size=recipe.precompute_ref_batch_size,
        gradient_checkpointing=recipe.gradient_checkpointing,
        bf16=bf16,
        use_cpu=use_cpu,
        disable_dropout=recipe.disable_dropout,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        logging_steps=recipe.logging_steps,
        logging_first_step=True,  # the first log is taken at the initial weights: the reference check
        eval_strategy="no",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=recipe.dataloader_num_workers,
        dataloader_pin_memory=recipe.dataloader_pin_memory and not use_cpu,
        dataset_num_proc=recipe.dataset_num_proc,
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="sequential",  # the order we built is the order trained
        # Text-only LoRA/full models use every trainable parameter each step (TRL's "ref"
        # adapter is frozen), so DDP can skip its per-step unused-parameter scan.
        ddp_find_unused_parameters=False,
    )
    args.update(recipe.extra_args)
    return KTOConfig(**args)


def _to_disk_dataset(records: list[dict[str, Any]], folder: Path, state):
    """A Dataset backed by files under `folder`, so TRL's map/precompute caches land there."""
    from datasets import Dataset, load_from_disk

    with state.main_process_first():
        if not (folder / "state.json").is_file():
            if state.is_main_process:
                tmp = folder.with_name(folder.name + f".tmp-{uuid.uuid4().hex[:8]}")
                Dataset.from_list(records).save_to_disk(str(tmp))
                tmp.rename(folder)
    return load_from_disk(str(folder))


def _reference_adapter_check(model: Any) -> None:
    """Fail loudly if a continued adapter would be judged against the bare base model."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and "ref" not in model.peft_config:
        raise RuntimeError("TRL did not add a frozen 'ref' adapter: the reference would be the bare base model, "
                           "not last week's adapter")


def _initial_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    for entry in log_history:
        if "loss" in entry and ("rewards/chosen" in entry or "rewards/rejected" in entry):
            return {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}
    return {}


def _final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last value of each key among train logs, plus the trainer's summary (train_loss…)."""
    out: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith("eval_") or not isinstance(value, (int, float)):
                continue
            if key in FINAL_METRIC_KEYS or key in ("train_loss", "train_runtime", "train_samples_per_second", "epoch"):
                out[key] = float(value)
    return out


def _reference_check(initial: Mapping[str, float], tolerance: float, resumed: bool) -> dict[str, Any]:
    rewards = [abs(initial[k]) for k in ("rewards/chosen", "rewards/rejected") if k in initial]
    if resumed or not rewards:
        return {"checked": False, "reason": "resumed run" if resumed else "no initial rewards logged"}
    worst = max(rewards)
    return {"checked": True, "max_abs_initial_reward": worst, "tolerance": tolerance, "ok": worst <= tolerance,
            "initial_loss": initial.get("loss")}


# --------------------------------------------------------------------------------------------
# Output folder
# --------------------------------------------------------------------------------------------


def _yaml_str(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def model_card(manifest: dict[str, Any]) -> str:
    """README.md: YAML front matter for the Hub, then lineage, recipe, metrics and timings."""
    data, recipe, health = manifest["data"], manifest["recipe"], manifest["health"]
    library = "peft" if manifest["kind"] == "lora" else "transformers"
    lines = [
        "---",
        f"base_model: {_yaml_str(manifest['base_model'])}",
        f"library_name: {library}",
        "tags:",
        "- kto",
        "- trl",
        "---",
        "",
        f"# KTO fine-tune ({manifest['kind']}) for week(s) {', '.join(manifest['weeks']) or 'unknown'}",
        "",
        f"Base model: `{manifest['base_model']}`. Initialised from: `{manifest['init_from'] or manifest['base_model']}` "
        "(also the reference model).",
        "",
    ]
    if not health["healthy"]:
        lines += [f"**UNHEALTHY — do not promote:** {'; '.join(health['problems'])}", ""]
    lines += [
        "## Data lineage",
        "",
        f"- weeks: {', '.join(manifest['weeks'])}",
        f"- rows trained: {data['rows']} ({data['desirable']} desirable, {data['undesirable']} undesirable); "
        f"rows in: {data['rows_in']}; dropped (prompt ≥ max_length): {data['dropped_prompt_too_long']}",
        f"- per source: {json.dumps(data['per_source'])}",
        f"- per signal: {json.dumps(data['per_signal'])}",
        f"- per week: {json.dumps(data['per_week'])}",
        f"- class weights: λD = {manifest['weights']['desirable']}, λU = {manifest['weights']['undesirable']} "
        f"(λD·nD/(λU·nU) = {manifest['weights']['ratio']})",
        f"- data format: {data['data_format']}; padding {data['padding_fraction']:.1%} "
        f"(unbucketed {data['padding_fraction_unbucketed']:.1%})",
        f"- lineage: `{json.dumps(manifest['lineage'], sort_keys=True, default=str)}`",
        "",
        "## Recipe",
        "",
        "| field | value |",
        "| --- | --- |",
        *[f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(recipe.items())],
        "",
        "## Results",
        "",
        "| metric | initial | final |",
        "| --- | --- | --- |",
        *[f"| {k} | {_fmt(manifest['initial_metrics'].get(k))} | {_fmt(v)} |" for k, v in sorted(manifest["metrics"].items())],
        "",
    ]
    if manifest.get("eval_metrics"):
        lines += ["Held-out: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(manifest["eval_metrics"].items())), ""]
    timings = manifest["timings"]
    lines += [
        "## Training",
        "",
        f"- global step {manifest['global_step']}; resumed from step {manifest['resumed_from_step']}",
        f"- time: {timings.get('total', 0):.1f} s total (setup incl. reference precompute {timings.get('setup', 0):.1f} s, "
        f"train {timings.get('train', 0):.1f} s)",
        f"- health: {'healthy' if health['healthy'] else 'unhealthy'}",
        f"- trl {manifest['versions'].get('trl')}, transformers {manifest['versions'].get('transformers')}, "
        f"peft {manifest['versions'].get('peft')}, torch {manifest['versions'].get('torch')}",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__}


def _write_output(output_dir: Path, model: Any, tokenizer: Any, manifest: dict[str, Any], log_history: list[dict]) -> None:
    """Write beside `output_dir`, then rename: a half-written folder never looks finished."""
    from peft import PeftModel

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        if isinstance(model, PeftModel):
            model.save_pretrained(str(staging), selected_adapters=["default"])  # not TRL's "ref" copy
            canonical_adapter_config(staging)
        else:
            model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (staging / LOG_HISTORY_FILE).write_text(json.dumps(log_history, indent=1, default=str))
        (staging / "README.md").write_text(model_card(manifest))
        write_manifest(staging, manifest)  # last: its presence marks a complete folder
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _result_from_manifest(output_dir: Path, manifest: dict[str, Any]) -> TrainResult:
    history_file = output_dir / LOG_HISTORY_FILE
    return TrainResult(
        output_dir=str(output_dir), kind=manifest["kind"], base_model=manifest["base_model"], init_from=manifest["init_from"],
        global_step=manifest["global_step"], resumed_from_step=manifest.get("resumed_from_step"),
        collapsed=manifest["health"]["collapse"]["collapsed"], health=manifest["health"],
        final_metrics=manifest["metrics"], initial_metrics=manifest["initial_metrics"],
        eval_metrics=manifest.get("eval_metrics", {}), data=manifest["data"], timings=manifest["timings"],
        fingerprint=manifest["fingerprint"], reused=True,
        log_history=json.loads(history_file.read_text()) if history_file.is_file() else [],
    )


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def train_kto(
    train_rows: pd.DataFrame,
    *,
    base_model: str,
    init_from: str | os.PathLike | None = None,
    output_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    recipe: KTORecipe | Mapping[str, Any] | None = None,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    lineage: Mapping[str, Any] | None = None,
    eval_rows: pd.DataFrame | None = None,
    on_log: LogCallback | None = None,
    device: str | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train one week with KTO and write `output_dir` (see the module docstring).

    `base_model`: hub name or local folder. `init_from`: last week's checkpoint folder (None →
    start from the base). `work_dir`: stable per week; holds Trainer checkpoints and caches, and
    a rerun with the same data and recipe resumes from it. `on_log(dict)` receives every log
    (rank 0). `device`: None → CUDA when available, else "cpu". `callbacks`: extra
    TrainerCallbacks. Under `accelerate launch` every rank calls this; only rank 0 writes.
    """
    import torch
    import transformers
    from accelerate import PartialState
    from transformers.trainer_callback import PrinterCallback
    from trl import KTOTrainer

    t_start = time.monotonic()
    recipe = resolve_recipe(recipe)
    output_dir, work_dir = Path(output_dir), Path(work_dir)
    base_model = str(base_model)
    init_from = None if init_from is None else str(init_from)
    init_manifest = _check_init(init_from, base_model, recipe)
    lineage = dict(lineage or {})
    train_rows = pd.DataFrame(train_rows).reset_index(drop=True)

    use_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    state = PartialState(cpu=use_cpu)
    bf16 = recipe.bf16 if recipe.bf16 is not None else (not use_cpu and _cuda_bf16(device))

    # Data: format, too-long drop and bucketing happen here, before TRL sees the rows.
    tokenizer = load_tokenizer(init_from or base_model)
    train = prepare_records(train_rows, tokenizer, recipe)
    if not train.records:
        raise ValueError("no training rows left after dropping prompts that reach max_length")
    eval_prepared = None
    if eval_rows is not None and len(eval_rows):
        eval_prepared = prepare_records(pd.DataFrame(eval_rows).reset_index(drop=True), tokenizer, recipe, bucket=False)
    summary = data_summary(train_rows, train)
    if eval_prepared is not None:
        summary["eval_rows"] = len(eval_prepared.records)
    fingerprint = run_fingerprint(train, eval_prepared, recipe, base_model, init_from, desirable_weight, undesirable_weight)

    existing = read_manifest(output_dir)
    if existing and existing.get("fingerprint") == fingerprint:
        return _result_from_manifest(output_dir, existing)

    with state.main_process_first():
        resume_from = prepare_work_dir(work_dir, fingerprint) if state.is_main_process else latest_checkpoint(work_dir / TRAINER_DIR)
    train_ds = _to_disk_dataset(train.records, work_dir / DATA_DIR / "train", state)
    eval_ds = _to_disk_dataset(eval_prepared.records, work_dir / DATA_DIR / "eval", state) if eval_prepared else None
    t_prepared = time.monotonic()

    # Model and trainer. Seed first: a fresh LoRA adapter is initialised randomly.
    transformers.set_seed(recipe.seed)
    model, peft_config = load_policy(base_model, init_from, recipe, _model_dtype(recipe, bf16))
    detector = CollapseDetector(recipe.collapse_patience, recipe.collapse_min_drop, recipe.beta)
    args = kto_config(recipe, trainer_dir=work_dir / TRAINER_DIR, use_cpu=use_cpu, bf16=bf16,
                      desirable_weight=desirable_weight, undesirable_weight=undesirable_weight)
    trainer = KTOTrainer(
        model=model, ref_model=None, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, peft_config=peft_config,
        callbacks=[_make_health_callback(detector, on_log, recipe.stop_on_collapse), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # logs go to on_log, not to stdout
    if peft_config is None and not recipe.full_finetune:
        _reference_adapter_check(trainer.accelerator.unwrap_model(trainer.model))
    t_setup = time.monotonic()

    resumed_from_step = int(_CHECKPOINT.match(resume_from.name).group(1)) if resume_from else None
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    t_trained = time.monotonic()
    eval_metrics: dict[str, float] = {}
    if eval_ds is not None:
        eval_metrics = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}

    log_history = list(trainer.state.log_history)
    initial = _initial_metrics(log_history)
    final = _final_metrics(log_history)
    collapse = detector.report()
    ref_check = _reference_check(initial, recipe.reference_check_tolerance, resumed_from_step is not None)
    problems = []
    if collapse["collapsed"]:
        problems.append(collapse["reason"])
    if ref_check.get("checked") and not ref_check["ok"]:
        problems.append(f"rewards at the initial weights reach {ref_check['max_abs_initial_reward']:.4g} "
                        f"(> {ref_check['tolerance']}): the reference may not be the init model")
    health = {"healthy": not problems, "problems": problems, "collapse": collapse, "reference_check": ref_check}
    n_d, n_u = summary["desirable"], summary["undesirable"]
    ratio = (desirable_weight * n_d) / (undesirable_weight * n_u) if n_u and undesirable_weight else None
    weeks = sorted({str(w) for w in lineage.get("weeks", [])} | set(summary["per_week"]))
    timings = {"prepare": t_prepared - t_start, "setup": t_setup - t_prepared, "train": t_trained - t_setup}

    result = TrainResult(
        output_dir=str(output_dir), kind=recipe.kind, base_model=base_model, init_from=init_from,
        global_step=int(trainer.state.global_step), resumed_from_step=resumed_from_step, collapsed=collapse["collapsed"],
        health=health, final_metrics=final, initial_metrics=initial, eval_metrics=eval_metrics, data=summary,
        timings=timings, fingerprint=fingerprint, log_history=log_history,
    )
    state = PartialState()  # TrainingArguments re-initialised the shared state: read it afresh
    if state.is_main_process:
        t_save = time.monotonic()
        manifest = {
            "kind": recipe.kind, "base_model": base_model, "init_from": init_from,
            "init_manifest": {k: init_manifest.get(k) for k in ("fingerprint", "weeks", "global_step")} if init_manifest else None,
            "weeks": weeks, "rows": {"train": summary["rows"], "desirable": n_d, "undesirable": n_u,
                                      "eval": summary.get("eval_rows", 0)},
            "weights": {"desirable": float(desirable_weight), "undesirable": float(undesirable_weight),
                        "ratio": None if ratio is None else round(ratio, 4)},
            "recipe": recipe.to_dict(), "metrics": final, "initial_metrics": initial, "eval_metrics": eval_metrics,
            "global_step": result.global_step, "resumed_from_step": resumed_from_step, "health": health,
            "data": summary, "lineage": lineage, "fingerprint": fingerprint, "timings": timings,
            "log_history_summary": _log_summary(log_history), "versions": _versions(),
            "world_size": state.num_processes, "device": str(trainer.args.device), "bf16": bf16,
        }
        timings["total"] = time.monotonic() - t_start  # provisional, for the card; refined below
        _write_output(output_dir, trainer.accelerator.unwrap_model(trainer.model), tokenizer, manifest, log_history)
        timings["save"] = time.monotonic() - t_save
        if not recipe.keep_checkpoints:
            shutil.rmtree(work_dir / TRAINER_DIR, ignore_errors=True)
    state.wait_for_everyone()
    timings["total"] = time.monotonic() - t_start
    return result


def _log_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    train_logs = [e for e in log_history if "loss" in e and "eval_loss" not in e]
    losses = [float(e["loss"]) for e in train_logs]
    return {
        "n_logs": len(log_history),
        "n_train_logs": len(train_logs),
        "first": train_logs[0] if train_logs else None,
        "last": train_logs[-1] if train_logs else None,
        "loss_min": min(losses) if losses else None,
        "loss_max": max(losses) if losses else None,
    }


# --------------------------------------------------------------------------------------------
# Module entry point: python -m kto_pipeline.train --spec spec.json  (or accelerate launch)
# --------------------------------------------------------------------------------------------


SPEC_KEYS = {"train_rows", "eval_rows", "base_model", "init_from", "output_dir", "work_dir", "recipe",
             "desirable_weight", "undesirable_weight", "lineage", "device", "result_path"}


def print_log(entry: dict[str, Any]) -> None:
    """The default log sink of the entry point: one JSON line per log, prefixed "KTO_LOG "."""
    print("KTO_LOG " + json.dumps(entry, default=str), flush=True)


def run_spec(spec: Mapping[str, Any], on_log: LogCallback | None = print_log) -> TrainResult:
    """Run one training from a JSON-able spec (row frames given as parquet paths).

    Keys: train_rows, base_model, output_dir, work_dir (required); eval_rows, init_from, recipe,
    desirable_weight, undesirable_weight, lineage, device, result_path (optional). Logs go to
    `on_log` on rank 0 (default: JSON lines prefixed "KTO_LOG " on stdout); rank 0 writes the
    result as JSON to result_path.
    """
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown spec key(s) {sorted(unknown)}")

    result = train_kto(
        pd.read_parquet(spec["train_rows"]),
        base_model=spec["base_model"], init_from=spec.get("init_from"), output_dir=spec["output_dir"],
        work_dir=spec["work_dir"], recipe=spec.get("recipe"), desirable_weight=spec.get("desirable_weight", 1.0),
        undesirable_weight=spec.get("undesirable_weight", 1.0), lineage=spec.get("lineage"),
        eval_rows=pd.read_parquet(spec["eval_rows"]) if spec.get("eval_rows") else None,
        on_log=on_log, device=spec.get("device"),
    )
    from accelerate import PartialState

    if spec.get("result_path") and PartialState().is_main_process:
        path = Path(spec["result_path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=1, default=str))
        tmp.replace(path)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kto_pipeline.train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file: see run_spec")
    ns = parser.parse_args(argv)
    result = run_spec(json.loads(Path(ns.spec).read_text()))
    return 0 if result.healthy else 3


if __name__ == "__main__":
    sys.exit(main())
