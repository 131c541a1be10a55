"""Resume: the run fingerprint, `work_dir/run.json`, and the newest complete Trainer checkpoint.

Trainer checkpoints live in `work_dir/trainer`, next to `work_dir/run.json` holding a
fingerprint of the prepared data + recipe + models + weights. A later call with the same
fingerprint resumes from the newest complete checkpoint (same final step count as an
uninterrupted run); another fingerprint clears our subfolders of `work_dir` and starts fresh.
The prepared dataset is saved under `work_dir/data`, so TRL's tokenisation and its reference
log-prob precompute are cached there (not in ~/.cache) and reused on resume.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from kto_pipeline.models.manifest import read_manifest
from kto_pipeline.train.data import PreparedData
from kto_pipeline.train.recipe import KTORecipe

FORMAT_VERSION = 1  # bump when data preparation changes what a fingerprint stands for
RUN_FILE = "run.json"
TRAINER_DIR = "trainer"
DATA_DIR = "data"
SFT_DIR = "sft"  # the SFT stage's checkpoint folder (recipe.sft_first)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def _model_identity(ref: str | None) -> Any:
    """What a model reference stands for: a checkpoint's manifest fingerprint, else the string."""
    if ref is None:
        return None
    manifest = read_manifest(ref)
    if manifest is not None:
        return {"ref": str(ref), "fingerprint": manifest.fingerprint, "global_step": manifest.global_step}
    return str(ref)


def run_fingerprint(
    train: PreparedData,
    eval_data: PreparedData | None,
    recipe: KTORecipe,
    base_model: str,
    init_from: str | None,
    desirable_weight: float,
    undesirable_weight: float,
) -> str:
    import trl

    return _sha(
        {
            "format_version": FORMAT_VERSION,
            "trl": trl.__version__,
            "train": _sha(train.records),
            "eval": _sha(eval_data.records) if eval_data else None,
            "recipe": recipe.fingerprint_dict(),
            "base_model": str(base_model),
            "init_from": _model_identity(init_from),
            "weights": [float(desirable_weight), float(undesirable_weight)],
        }
    )


def _complete_checkpoint(folder: Path, step: int) -> bool:
    """Trainer writes trainer_state.json last; a process killed while writing it (SIGKILL, OOM)
    leaves it empty or cut short, and resuming from that folder would fail on every retry."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def checkpoint_step(folder: Path) -> int:
    """The step of a Trainer checkpoint folder (checkpoint-<step>)."""
    m = _CHECKPOINT.match(folder.name)
    if m is None:
        raise ValueError(f"{folder} is not a Trainer checkpoint folder")
    return int(m.group(1))


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
    for name in (TRAINER_DIR, DATA_DIR, SFT_DIR):
        shutil.rmtree(work_dir / name, ignore_errors=True)
    tmp = run_file.with_name(run_file.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "created": time.time()}, indent=1))
    tmp.replace(run_file)  # atomic: a kill never leaves a half-written run.json
    return None
