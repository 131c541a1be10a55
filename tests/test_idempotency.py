"""Re-materializing a week gives byte-identical outputs, through the project's own job.

A user reruns a week after a failure, a backfill or a code-location reload; what the week wrote
before (tables, dedup history, checkpoint, report, promotion) must come back the same bytes, and
a retraining from nothing (checkpoint deleted) must give the same weights and report.
"""

import json
import os
import re
import shutil
from pathlib import Path

from conftest import PROJECT
from kto_pipeline.app.cli import demo_models_env
from kto_pipeline.app.dagster_command import OFFLINE_ENV, execute_week
from kto_pipeline.devtools.sample_data import WEEKS
from kto_pipeline.models.registry import ModelRegistry

WEEK = WEEKS[0]
# Wall-clock figures (HF Trainer's runtime and throughput, the manifest's timings) are the one
# part of a checkpoint that may differ between two trainings; everything else must not.
_WALL_CLOCK = re.compile(r"runtime|per_second|timings|created")


def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def _without_wall_clock(name: str, data: bytes) -> object:
    if name.endswith(".json"):

        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if not _WALL_CLOCK.search(k)}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        return strip(json.loads(data))
    if name.endswith("README.md"):
        return [
            line for line in data.decode().splitlines() if not (_WALL_CLOCK.search(line) or line.startswith("- time:"))
        ]
    return data


def _run_week(home: Path, env: dict[str, str], tag: str) -> None:
    log = home / f"run_{tag}.log"
    code = execute_week(PROJECT, env, "retrain_job", WEEK, log, trigger="test")
    assert code == 0, log.read_text()[-4000:]


def test_rerunning_a_week_rewrites_the_same_bytes_and_a_retraining_the_same_weights(sample_dumps, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    storage, models = home / "warehouse", home / "models"
    env = {
        **os.environ,
        **demo_models_env(tmp_path / "shared", plumbing=True),
        **OFFLINE_ENV,
        "DAGSTER_HOME": str(home),
        "KTO_PIPELINE_DUMPS": str(sample_dumps),
        "KTO_PIPELINE_STORAGE": str(storage),
        "KTO_PIPELINE_MODELS": str(models),
        "KTO_PIPELINE_TRAINER_THREADS": "1",
    }
    _run_week(home, env, "first")
    # The trainer's resumable state (HF Trainer checkpoints) is scratch, not an output.
    first_data, first_models = _snapshot(storage), _snapshot(models, skip=("work",))
    tables = {name.split("/")[0] for name in first_data}
    assert {
        "raw_feedback",
        "raw_feedback_quarantine",
        "redacted_feedback",
        "deduplicated_feedback",
        "scored_feedback",
        "balanced_feedback",
        "synthetic_topup",
        "dedup_history",
    } <= tables
    registry = ModelRegistry(models)
    checkpoint = registry.checkpoint_dir(WEEK)
    weights = str((checkpoint / "adapter_model.safetensors").relative_to(models))
    assert weights in first_models and f"reports/{WEEK}/eval_report.md" in first_models

    _run_week(home, env, "rerun")
    assert _snapshot(storage) == first_data
    assert _snapshot(models, skip=("work",)) == first_models

    # Retrain from nothing: the same rows, seeds and init give the same weights and report.
    shutil.rmtree(checkpoint)
    shutil.rmtree(registry.work_dir(WEEK))
    _run_week(home, env, "retrain")
    again = _snapshot(models, skip=("work",))
    assert again.keys() == first_models.keys()
    assert again[weights] == first_models[weights]
    differing = [n for n in again if _without_wall_clock(n, again[n]) != _without_wall_clock(n, first_models[n])]
    assert differing == []
    assert _snapshot(storage) == first_data
