"""The model to train and its reference: loading the policy, its dtype, and the init checks.

Reference model = the init model. Fresh LoRA: the reference is the base with the adapter
disabled. A LoRA chain (init_from = last week's adapter): we load base + adapter as trainable
and pass the `PeftModel`; TRL 1.16 then copies the adapter into a frozen "ref" adapter and
computes the reference with it, so the reference is last week's model, not the bare base. We
check that the copy exists (else we stop). Full fine-tune: the reference is the loaded init
model, precomputed before the first step.
"""

from __future__ import annotations

from typing import Any

from kto_pipeline.models.checkpoints import load_causal_lm
from kto_pipeline.models.manifest import MANIFEST, CheckpointManifest, read_manifest
from kto_pipeline.train.recipe import KTORecipe


def cuda_bf16(device: str | None) -> bool:
    import torch

    if device is not None and not str(device).startswith("cuda"):
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def model_dtype(recipe: KTORecipe, bf16: bool):
    import torch

    if recipe.model_dtype != "auto":
        return getattr(torch, recipe.model_dtype)
    # Full FT keeps fp32 master weights (autocast does bf16 compute); a frozen LoRA base
    # gains nothing from fp32 copies, so it is held in bf16 when bf16 is on.
    return torch.bfloat16 if bf16 and not recipe.full_finetune else torch.float32


def check_init(init_from: str | None, base_model: str, recipe: KTORecipe) -> CheckpointManifest | None:
    """The init checkpoint's manifest, after checking the recipe can continue from it."""
    if init_from is None:
        return None
    manifest = read_manifest(init_from)
    if recipe.full_finetune:
        if manifest is not None and manifest.is_lora:
            raise ValueError(f"full fine-tune cannot continue from the LoRA checkpoint {init_from}; merge it first")
        return manifest
    if manifest is None or not manifest.is_lora:
        raise ValueError(f"a LoRA week continues from a LoRA checkpoint; {init_from} has no LoRA {MANIFEST}")
    if str(manifest.base_model) != str(base_model):
        raise ValueError(f"{init_from} is an adapter on {manifest.base_model!r}, not on {base_model!r}")
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
    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.lora_target_modules,
        task_type="CAUSAL_LM",
        bias="none",
    )
    return model, config


def reference_adapter_check(model: Any) -> None:
    """Fail loudly if a continued adapter would be judged against the bare base model."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and "ref" not in model.peft_config:
        raise RuntimeError(
            "TRL did not add a frozen 'ref' adapter: the reference would be the bare base model, "
            "not last week's adapter"
        )
