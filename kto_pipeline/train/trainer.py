"""`train_kto`: one week's KTO fine-tune with TRL's `KTOTrainer`, and the `KTOConfig` it uses.

Data preparation (`data`), resume (`resume`), the policy and its reference (`policy`), health
(`health`) and the output folder (`output`, `card`) live in their own modules; this one wires
them into a training and writes the manifest.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.models.checkpoints import load_tokenizer
from kto_pipeline.models.manifest import CheckpointManifest, KTORunRecord, read_manifest
from kto_pipeline.train.card import library_versions
from kto_pipeline.train.data import data_summary, prepare_records, to_disk_dataset
from kto_pipeline.train.health import CollapseDetector, LogCallback, make_health_callback, reference_check
from kto_pipeline.train.output import result_from_output, write_output
from kto_pipeline.train.policy import check_init, cuda_bf16, load_policy, model_dtype, reference_adapter_check
from kto_pipeline.train.recipe import KTORecipe, resolve_recipe
from kto_pipeline.train.result import TrainResult, final_metrics, initial_metrics, log_summary
from kto_pipeline.train.resume import (
    DATA_DIR,
    SFT_DIR,
    TRAINER_DIR,
    checkpoint_step,
    latest_checkpoint,
    prepare_work_dir,
    run_fingerprint,
)
from kto_pipeline.train.sft_stage import SFT_TRAINER_DIR, run_sft_stage
from kto_pipeline.train.trainer_args import shared_trainer_args

# Telemetry pings from TRL's rank 0 are never wanted; HF_HUB_OFFLINE is left to the caller.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


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
    init_manifest = check_init(init_from, base_model, recipe)
    lineage = dict(lineage or {})
    train_rows = pd.DataFrame(train_rows).reset_index(drop=True)

    use_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    state = PartialState(cpu=use_cpu)
    bf16 = recipe.bf16 if recipe.bf16 is not None else (not use_cpu and cuda_bf16(device))

    # Data: format, too-long drop and bucketing happen here, before TRL sees the rows.
    tokenizer = load_tokenizer(init_from or base_model)
    train = prepare_records(train_rows, tokenizer, recipe)
    if not train.records:
        raise ValueError("no training rows left after dropping prompts that reach max_length")
    eval_prepared = None
    if eval_rows is not None and len(eval_rows):
        eval_frame = pd.DataFrame(eval_rows).reset_index(drop=True)
        eval_prepared = prepare_records(eval_frame, tokenizer, recipe, bucket=False)
    summary = data_summary(train_rows, train)
    if eval_prepared is not None:
        summary["eval_rows"] = len(eval_prepared.records)
    fingerprint = run_fingerprint(
        train, eval_prepared, recipe, base_model, init_from, desirable_weight, undesirable_weight
    )

    existing = read_manifest(output_dir)
    if existing is not None and existing.kto is not None and existing.fingerprint == fingerprint:
        return result_from_output(output_dir, existing)

    with state.main_process_first():
        resume_from = (
            prepare_work_dir(work_dir, fingerprint)
            if state.is_main_process
            else latest_checkpoint(work_dir / TRAINER_DIR)
        )
    train_ds = to_disk_dataset(train.records, work_dir / DATA_DIR / "train", state)
    eval_ds = to_disk_dataset(eval_prepared.records, work_dir / DATA_DIR / "eval", state) if eval_prepared else None
    t_prepared = time.monotonic()

    # With sft_first, KTO starts from (and is judged against) the SFT stage's model.
    sft = None
    if recipe.sft_first:
        sft = run_sft_stage(
            train.records,
            base_model=base_model,
            init_from=init_from,
            recipe=recipe,
            work_dir=work_dir,
            fingerprint=fingerprint,
            tokenizer=tokenizer,
            use_cpu=use_cpu,
            bf16=bf16,
            dtype=model_dtype(recipe, bf16),
        )
    t_sft = time.monotonic()

    # Model and trainer. Seed first: a fresh LoRA adapter is initialised randomly.
    transformers.set_seed(recipe.seed)
    policy_init = str(sft.output_dir) if sft is not None else init_from
    model, peft_config = load_policy(base_model, policy_init, recipe, model_dtype(recipe, bf16))
    detector = CollapseDetector(recipe.collapse_patience, recipe.collapse_min_drop, recipe.beta)
    args = kto_config(
        recipe,
        trainer_dir=work_dir / TRAINER_DIR,
        use_cpu=use_cpu,
        bf16=bf16,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    trainer = KTOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[make_health_callback(detector, on_log, recipe.stop_on_collapse), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # logs go to on_log, not to stdout
    if peft_config is None and not recipe.full_finetune:
        reference_adapter_check(trainer.accelerator.unwrap_model(trainer.model))
    t_setup = time.monotonic()

    resumed_from_step = checkpoint_step(resume_from) if resume_from else None
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    t_trained = time.monotonic()
    eval_metrics: dict[str, float] = {}
    if eval_ds is not None:
        eval_metrics = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}

    log_history = list(trainer.state.log_history)
    initial = initial_metrics(log_history)
    final = final_metrics(log_history)
    collapse = detector.report()
    ref_check = reference_check(initial, recipe.reference_check_tolerance, resumed_from_step is not None)
    problems = []
    if collapse["collapsed"]:
        problems.append(collapse["reason"])
    if ref_check.get("checked") and not ref_check["ok"]:
        problems.append(
            f"rewards at the initial weights reach {ref_check['max_abs_initial_reward']:.4g} "
            f"(> {ref_check['tolerance']}): the reference may not be the init model"
        )
    health = {"healthy": not problems, "problems": problems, "collapse": collapse, "reference_check": ref_check}
    n_d, n_u = summary["desirable"], summary["undesirable"]
    ratio = (desirable_weight * n_d) / (undesirable_weight * n_u) if n_u and undesirable_weight else None
    weeks = sorted({str(w) for w in lineage.get("weeks", [])} | set(summary["per_week"]))
    timings = {
        "prepare": t_prepared - t_start,
        "sft": t_sft - t_prepared,
        "setup": t_setup - t_sft,
        "train": t_trained - t_setup,
    }
    if recipe.sft_first:
        final = {**final, **(sft.metrics() if sft is not None else {"sft_rows": 0, "sft_steps": 0})}

    result = TrainResult(
        output_dir=str(output_dir),
        kind=recipe.kind,
        base_model=base_model,
        init_from=init_from,
        global_step=int(trainer.state.global_step),
        resumed_from_step=resumed_from_step,
        collapsed=collapse["collapsed"],
        health=health,
        final_metrics=final,
        initial_metrics=initial,
        eval_metrics=eval_metrics,
        data=summary,
        timings=timings,
        fingerprint=fingerprint,
        log_history=log_history,
    )
    state = PartialState()  # TrainingArguments re-initialised the shared state: read it afresh
    if state.is_main_process:
        t_save = time.monotonic()
        init_record = None
        if init_manifest is not None:
            init_record = {
                "fingerprint": init_manifest.fingerprint,
                "weeks": init_manifest.weeks,
                "global_step": init_manifest.global_step,
            }
        manifest = CheckpointManifest(
            kind=recipe.kind,
            base_model=base_model,
            init_from=init_from,
            weeks=weeks,
            global_step=result.global_step,
            recipe=recipe.to_dict(),
            metrics=final,
            health=health,
            rows={"train": summary["rows"], "desirable": n_d, "undesirable": n_u, "eval": summary.get("eval_rows", 0)},
            fingerprint=fingerprint,
            timings=timings,
            kto=KTORunRecord(
                init_manifest=init_record,
                weights={
                    "desirable": float(desirable_weight),
                    "undesirable": float(undesirable_weight),
                    "ratio": None if ratio is None else round(ratio, 4),
                },
                initial_metrics=initial,
                eval_metrics=eval_metrics,
                resumed_from_step=resumed_from_step,
                data=summary,
                lineage=lineage,
                log_history_summary=log_summary(log_history),
                versions=library_versions(),
                world_size=state.num_processes,
                device=str(trainer.args.device),
                bf16=bf16,
            ),
        )
        timings["total"] = time.monotonic() - t_start  # provisional, for the card; refined below
        write_output(output_dir, trainer.accelerator.unwrap_model(trainer.model), tokenizer, manifest, log_history)
        timings["save"] = time.monotonic() - t_save
        if not recipe.keep_checkpoints:
            for name in (TRAINER_DIR, SFT_DIR, SFT_TRAINER_DIR):
                shutil.rmtree(work_dir / name, ignore_errors=True)
    state.wait_for_everyone()
    timings["total"] = time.monotonic() - t_start
    return result


def kto_config(
    recipe: KTORecipe,
    *,
    trainer_dir: Path,
    use_cpu: bool,
    bf16: bool,
    desirable_weight: float,
    undesirable_weight: float,
):
    from trl import KTOConfig

    args: dict[str, Any] = {
        **shared_trainer_args(recipe, trainer_dir=trainer_dir, use_cpu=use_cpu, bf16=bf16),
        "loss_type": recipe.loss_type,
        "beta": recipe.beta,
        "desirable_weight": float(desirable_weight),
        "undesirable_weight": float(undesirable_weight),
        "learning_rate": recipe.learning_rate,
        "per_device_eval_batch_size": recipe.per_device_eval_batch_size,
        "num_train_epochs": recipe.num_train_epochs,
        "max_steps": recipe.max_steps if recipe.max_steps is not None else -1,
        "precompute_ref_log_probs": recipe.precompute_ref_log_probs,
        "precompute_ref_batch_size": recipe.precompute_ref_batch_size,
        "disable_dropout": recipe.disable_dropout,
        "save_strategy": "steps",
        "save_steps": recipe.save_steps,
        "save_total_limit": recipe.save_total_limit,
        "train_sampling_strategy": "sequential",  # the order we built is the order trained
    }
    args.update(recipe.extra_args)
    return KTOConfig(**args)
