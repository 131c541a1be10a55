"""SFT before KTO: the week's desirable rows through TRL's `SFTTrainer`, as KTO's start.

The KTO paper (Ethayarajh et al., 2024) and TRL's KTO docs fine-tune on the desirable
examples first and run KTO from that model, which is also the reference. With
`recipe.sft_first` a week does both: this stage trains the week's desirable rows (thumbs-ups
and users' edits, label True) from the week's init model, loss on the completion only, and
writes a checkpoint folder in the pipeline's format under the week's work dir; `train_kto`
then starts KTO from that folder. A fresh LoRA week trains a new adapter here that KTO keeps
training (TRL copies it into its frozen "ref" adapter); a LoRA chain keeps training last
week's adapter; a full fine-tune trains every weight.

The rows are the ones KTO trains on, after the same too-long filter and in the same format
(plain or conversational). The folder carries the week's run fingerprint, so a rerun of the
same week (a KTO resume) reuses it and keeps the same reference; a killed SFT stage reruns
from its start (it writes no mid-run checkpoints: it is the shorter half of the week).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kto_pipeline.models.manifest import CheckpointManifest, read_manifest
from kto_pipeline.train.data import to_disk_dataset
from kto_pipeline.train.output import write_output
from kto_pipeline.train.policy import load_policy
from kto_pipeline.train.recipe import KTORecipe
from kto_pipeline.train.resume import DATA_DIR, SFT_DIR
from kto_pipeline.train.trainer_args import shared_trainer_args

SFT_TRAINER_DIR = "sft_trainer"


@dataclass(frozen=True)
class SFTStage:
    """What the SFT stage trained, and where the model KTO starts from is."""

    output_dir: Path
    rows: int
    global_step: int
    loss_first: float | None
    loss_last: float | None
    seconds: float
    reused: bool

    def metrics(self) -> dict[str, Any]:
        return {
            "sft_rows": self.rows,
            "sft_steps": self.global_step,
            "sft_loss_first": self.loss_first,
            "sft_loss_last": self.loss_last,
        }


def sft_examples(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The desirable records as SFTTrainer's prompt-completion examples (label dropped)."""
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in records if r["label"]]


def run_sft_stage(
    records: Sequence[Mapping[str, Any]],
    *,
    base_model: str,
    init_from: str | None,
    recipe: KTORecipe,
    work_dir: Path,
    fingerprint: str,
    tokenizer: Any,
    use_cpu: bool,
    bf16: bool,
    dtype: Any,
) -> SFTStage | None:
    """Fine-tune the desirable `records` with SFTTrainer; the folder KTO should start from
    (None when the week has no desirable row: KTO then starts from the init model as usual)."""
    import transformers
    from accelerate import PartialState
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    folder = work_dir / SFT_DIR
    existing = read_manifest(folder)
    if existing is not None and existing.fingerprint == fingerprint:
        return _stage_from(folder, existing, reused=True)
    examples = sft_examples(records)
    if not examples:
        return None  # nothing desirable to imitate this week: KTO starts from the init model

    t0 = time.monotonic()
    state = PartialState(cpu=use_cpu)
    dataset = to_disk_dataset(examples, work_dir / DATA_DIR / "sft", state)
    transformers.set_seed(recipe.seed)
    model, peft_config = load_policy(base_model, init_from, recipe, dtype)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(recipe, trainer_dir=work_dir / SFT_TRAINER_DIR, use_cpu=use_cpu, bf16=bf16),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    losses = [float(log["loss"]) for log in trainer.state.log_history if "loss" in log]
    if losses and not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"the SFT stage's loss became non-finite: {losses[-5:]}")
    state = PartialState()  # TrainingArguments re-initialised the shared state: read it afresh
    manifest = CheckpointManifest(
        kind=recipe.kind,
        base_model=base_model,
        init_from=init_from,
        global_step=int(trainer.state.global_step),
        recipe=recipe.to_dict(),
        rows={"train": len(examples), "desirable": len(examples), "undesirable": 0},
        metrics={"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None},
        health={"healthy": True, "problems": [], "collapse": {"collapsed": False}},
        fingerprint=fingerprint,
        timings={"total": round(time.monotonic() - t0, 2)},
    )
    if state.is_main_process:
        write_output(folder, trainer.accelerator.unwrap_model(trainer.model), tokenizer, manifest, [])
    state.wait_for_everyone()
    return _stage_from(folder, manifest, reused=False)


def _stage_from(folder: Path, manifest: CheckpointManifest, *, reused: bool) -> SFTStage:
    return SFTStage(
        output_dir=folder,
        rows=int(manifest.rows.get("train", 0)),
        global_step=int(manifest.global_step or 0),
        loss_first=manifest.metrics.get("loss_first"),
        loss_last=manifest.metrics.get("loss_last"),
        seconds=float(manifest.timings.get("total", 0.0)),
        reused=reused,
    )


def sft_config(recipe: KTORecipe, *, trainer_dir: Path, use_cpu: bool, bf16: bool):
    """TRL's SFTConfig from the recipe: KTO's batch, schedule and length; SFT's epochs and lr."""
    from trl import SFTConfig

    return SFTConfig(
        **shared_trainer_args(recipe, trainer_dir=trainer_dir, use_cpu=use_cpu, bf16=bf16),
        learning_rate=recipe.sft_learning_rate or recipe.learning_rate,
        num_train_epochs=recipe.sft_epochs,
        completion_only_loss=True,
        packing=False,
        # Reshuffled each epoch as SFT expects, but batched by similar length: PII-wrapped prompts
        # are ~4x longer than bare ones and random batches padded most rows to them (the stage
        # took 59 s instead of 24 s on week 4 of the main job, same rows and steps).
        train_sampling_strategy="group_by_length" if recipe.length_bucketing else "random",
        save_strategy="no",
    )
