"""The training recipe: every setting that decides how a week trains, validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KTORecipe:
    """Everything that decides how a week trains. Defaults are the paper's / TRL's values.

    Override from a dict with `KTORecipe.from_dict({...})` (unknown keys raise: a typo in the
    Dagster config must not silently fall back to a default).
    """

    loss_type: str = field(default="kto", metadata={"help": '"kto", or "apo_zero_unpaired" (no KL pass)'})
    beta: float = field(default=0.1, metadata={"help": "KTO's β: how far the policy may move from the reference"})
    learning_rate: float = field(default=5e-6, metadata={"help": "peak learning rate"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers learning-rate schedule"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of the steps spent warming up, in [0, 1)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    # LoRA (default) or full fine-tune
    full_finetune: bool = field(default=False, metadata={"help": "train every weight instead of a LoRA adapter"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling α"})
    lora_dropout: float = field(
        default=0.05, metadata={"help": "LoRA dropout; note: TRL's disable_dropout (default True) also zeroes this"}
    )
    lora_target_modules: str | list[str] = field(
        default="all-linear",
        metadata={"help": 'modules the adapter wraps; "all-linear" (PEFT never includes lm_head here)'},
    )
    # Batching and length
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "rows per micro-batch and device; also KTO's KL (z0) block, so ≥ 2"}
    )
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "rows per eval micro-batch and device"})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the rows (when max_steps is None)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps; None: num_train_epochs decides"})
    max_length: int = field(
        default=1024, metadata={"help": "prompt+completion token cap; rows whose prompt alone reaches it are dropped"}
    )
    length_bucketing: bool = field(
        default=True,
        metadata={
            "help": "order rows in shuffled blocks of similar length (less padding); the SFT stage samples "
            "with transformers' group_by_length"
        },
    )
    data_format: str = field(default="auto", metadata={"help": '"auto" | "conversational" | "plain"'})
    # SFT before KTO (the KTO paper's and TRL's order): off by default, see sft_stage.py
    sft_first: bool = field(
        default=False,
        metadata={
            "help": "fine-tune on the week's desirable rows with TRL's SFTTrainer first, then run KTO "
            "from that model, with it as the reference"
        },
    )
    sft_epochs: float = field(default=1.0, metadata={"help": "passes of the SFT stage over the desirable rows"})
    sft_learning_rate: float | None = field(
        default=None, metadata={"help": "the SFT stage's peak learning rate; None: learning_rate"}
    )
    # Reference model and memory/speed levers
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "compute the reference log-probs once before training"}
    )
    precompute_ref_batch_size: int | None = field(
        default=None, metadata={"help": "batch size of that precompute; None: TRL's choice"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory; only when memory needs it (~20% slower)"}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast; None: when CUDA supports it (never on CPU)"}
    )
    model_dtype: str = field(
        default="auto",
        metadata={
            "help": 'weights dtype (a torch dtype name); "auto": fp32 weights for full FT, '
            "bf16 frozen base for LoRA under bf16"
        },
    )
    disable_dropout: bool = field(default=True, metadata={"help": "TRL's disable_dropout: no dropout in the models"})
    # Checkpoints, logging, reproducibility
    save_steps: int = field(default=50, metadata={"help": "steps between resumable Trainer checkpoints"})
    save_total_limit: int = field(default=2, metadata={"help": "Trainer checkpoints kept in work_dir"})
    keep_checkpoints: bool = field(default=False, metadata={"help": "keep work_dir/trainer after a finished run"})
    logging_steps: int = field(default=5, metadata={"help": "steps between logs (the collapse check reads each log)"})
    seed: int = field(default=0, metadata={"help": "seed of the adapter init, block shuffle and data order"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    dataloader_pin_memory: bool = field(default=True, metadata={"help": "pin DataLoader memory (never on CPU)"})
    dataset_num_proc: int | None = field(default=None, metadata={"help": "processes for TRL's dataset tokenisation"})
    # Health
    collapse_patience: int = field(
        default=3, metadata={"help": "consecutive logs with both rewards falling that mean collapse"}
    )
    collapse_min_drop: float = field(
        default=0.05, metadata={"help": "nats of log-ratio per log that count as falling (see CollapseDetector)"}
    )
    stop_on_collapse: bool = field(default=True, metadata={"help": "stop training once it has collapsed"})
    reference_check_tolerance: float = field(
        default=0.05, metadata={"help": "max |reward| at the initial weights (policy = reference there)"}
    )
    extra_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'escape hatch: passed verbatim to KTOConfig (e.g. {"optim": "adamw_torch_fused"})'},
    )

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
            raise ValueError(
                "per_device_train_batch_size must be ≥ 2: KTO estimates z0 from pairs inside a micro-batch"
            )
        if self.data_format not in ("auto", "conversational", "plain"):
            raise ValueError(f"data_format must be auto, conversational or plain, got {self.data_format!r}")
        targets = (
            [self.lora_target_modules] if isinstance(self.lora_target_modules, str) else list(self.lora_target_modules)
        )
        if "lm_head" in targets:
            raise ValueError("LoRA on lm_head is not supported (TRL computes log-probs from lm_head.weight directly)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must lie in [0, 1)")
        if self.sft_epochs <= 0:
            raise ValueError("sft_epochs must be > 0")
        if self.sft_learning_rate is not None and self.sft_learning_rate <= 0:
            raise ValueError("sft_learning_rate must be > 0 (or None: learning_rate)")
        if self.collapse_patience < 1:
            raise ValueError("collapse_patience must be ≥ 1")

    @property
    def kind(self) -> str:
        return "full" if self.full_finetune else "lora"

    def fingerprint_dict(self) -> dict[str, Any]:
        """The fields that change what is trained (logging and housekeeping are left out)."""
        skip = {
            "logging_steps",
            "keep_checkpoints",
            "save_total_limit",
            "dataloader_num_workers",
            "dataloader_pin_memory",
            "dataset_num_proc",
            "stop_on_collapse",
            "reference_check_tolerance",
        }
        return {k: v for k, v in self.to_dict().items() if k not in skip}


def resolve_recipe(recipe: KTORecipe | Mapping[str, Any] | None) -> KTORecipe:
    if recipe is None:
        return KTORecipe()
    if isinstance(recipe, KTORecipe):
        recipe.validate()
        return recipe
    return KTORecipe.from_dict(recipe)
