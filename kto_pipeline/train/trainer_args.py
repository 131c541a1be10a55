"""The TrainingArguments settings the SFT stage and the KTO stage share, from the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kto_pipeline.train.recipe import KTORecipe


def shared_trainer_args(recipe: KTORecipe, *, trainer_dir: Path, use_cpu: bool, bf16: bool) -> dict[str, Any]:
    """Schedule, batch, precision, logging, seeds and data loading: one rule for both trainers.

    Set explicitly where TRL's configs default otherwise (SFTConfig turns bf16 and gradient
    checkpointing on): the recipe decides them for both stages.
    """
    return dict(
        output_dir=str(trainer_dir),
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        max_length=recipe.max_length,
        gradient_checkpointing=recipe.gradient_checkpointing,
        bf16=bf16,
        use_cpu=use_cpu,
        logging_steps=recipe.logging_steps,
        logging_first_step=True,  # the first log is taken at the initial weights
        eval_strategy="no",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=recipe.dataloader_num_workers,
        dataloader_pin_memory=recipe.dataloader_pin_memory and not use_cpu,
        dataset_num_proc=recipe.dataset_num_proc,
        report_to="none",
        disable_tqdm=True,
        # Text-only LoRA/full models use every trainable parameter each step (TRL's "ref"
        # adapter is frozen), so DDP can skip its per-step unused-parameter scan.
        ddp_find_unused_parameters=False,
    )
