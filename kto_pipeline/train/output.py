"""The checkpoint folder a training writes, atomically, and the result read back from one.

The folder is written beside `output_dir` and renamed at the end, so a crash never leaves a
folder that looks finished; the manifest is written last inside it. A later call whose
fingerprint matches a finished folder's reads its result back instead of training again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from kto_pipeline.models.checkpoints import canonical_adapter_config, replace_folder
from kto_pipeline.models.manifest import CheckpointManifest, write_manifest
from kto_pipeline.train.card import model_card
from kto_pipeline.train.result import TrainResult

LOG_HISTORY_FILE = "log_history.json"


def write_output(
    output_dir: Path, model: Any, tokenizer: Any, manifest: CheckpointManifest, log_history: list[dict]
) -> None:
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
        if manifest.kto is not None:  # a model card describes a KTO run; the SFT stage's folder is internal
            (staging / "README.md").write_text(model_card(manifest))
        write_manifest(staging, manifest)  # last: its presence marks a complete folder
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def result_from_output(output_dir: Path, manifest: CheckpointManifest) -> TrainResult:
    """The result of the training a finished folder holds (`reused`: nothing was trained now)."""
    run = manifest.kto
    if run is None:
        raise ValueError(f"{output_dir} was not written by the KTO trainer (its manifest has no run record)")
    history_file = output_dir / LOG_HISTORY_FILE
    return TrainResult(
        output_dir=str(output_dir),
        kind=manifest.kind,
        base_model=manifest.base_model,
        init_from=manifest.init_from,
        global_step=manifest.global_step,
        resumed_from_step=run.resumed_from_step,
        collapsed=manifest.health["collapse"]["collapsed"],
        health=manifest.health,
        final_metrics=manifest.metrics,
        initial_metrics=run.initial_metrics,
        eval_metrics=run.eval_metrics,
        data=run.data,
        timings=manifest.timings,
        fingerprint=manifest.fingerprint,
        reused=True,
        log_history=json.loads(history_file.read_text()) if history_file.is_file() else [],
    )
