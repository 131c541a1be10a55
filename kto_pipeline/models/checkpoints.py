"""The checkpoint folder format, and loading any model reference the pipeline passes around.

A model reference is a string, as a user would give it: a hub name (`Qwen/Qwen2.5-0.5B`), a
local model folder, or a checkpoint folder written by the trainer. A checkpoint folder
follows Hugging Face conventions (a PEFT adapter or a full model, the tokenizer, a README.md
model card) plus `kto_checkpoint.json` (`manifest.CheckpointManifest`), which says what kind
it is and what it came from: kind ("lora" | "full"), base_model, init_from, weeks, global_step, …

A LoRA checkpoint is always an adapter on top of `base_model` (a week that starts from last
week's adapter keeps training that adapter), so loading it needs only the base and the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kto_pipeline.models.manifest import read_manifest

ADAPTER_CONFIG = "adapter_config.json"


def canonical_adapter_config(folder: str | Path) -> None:
    """Rewrite PEFT's adapter_config.json with its module lists sorted.

    PEFT keeps target_modules as a Python set and writes it in the set's iteration order, which
    changes with PYTHONHASHSEED: two identical trainings would otherwise write different bytes.
    """
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def base_model_of(ref: str | Path) -> str:
    """The plain model a reference ultimately sits on (itself when it is not a LoRA checkpoint)."""
    manifest = read_manifest(ref)
    if manifest is not None and manifest.is_lora:
        return str(manifest.base_model)
    return str(ref)


def load_tokenizer(ref: str | Path):
    from transformers import AutoTokenizer

    folder = Path(ref)
    source = ref if (folder / "tokenizer_config.json").is_file() or not folder.exists() else base_model_of(ref)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(ref: str | Path, *, device: str | None = None, dtype: Any = None, trainable: bool = False):
    """A causal LM for `ref`: a hub name or model folder, or a pipeline checkpoint.

    A LoRA checkpoint comes back as a `PeftModel` (base + adapter, trainable when asked, so a
    new week can keep training last week's adapter); a full checkpoint as a plain model.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {} if dtype is None else {"dtype": dtype}
    manifest = read_manifest(ref)
    if manifest is not None and manifest.is_lora:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(str(manifest.base_model), **kwargs)
        model = PeftModel.from_pretrained(base, str(ref), is_trainable=trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(ref), **kwargs)
    if device is not None:
        model.to(device)
    if not trainable:
        model.eval()
    return model


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished `staging` folder to `target`, replacing what is there, so a reader sees
    the old folder or the new one, never half of either (the old one is removed afterwards)."""
    import shutil
    import uuid

    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
