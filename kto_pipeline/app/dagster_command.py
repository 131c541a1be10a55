"""Running a Dagster job for one week through the `dagster` command (the library does not
import Dagster): shared by the demo and the simulation's main job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRANSFORMERS_OFFLINE": "1"}

# One process per run, not per step: on a small machine a step's process start (imports of
# torch, transformers, Presidio) costs more than most steps' work.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def execute_week(
    project: Path,
    env: dict[str, str],
    job: str,
    week: str,
    log: Path,
    *,
    trigger: str,
    run_config: dict[str, Any] | None = None,
) -> int:
    """`dagster job execute` of `job` for the week's partition; output to `log`; the exit code."""
    config_path = log.with_suffix(".run_config.json")
    config_path.write_text(json.dumps({**IN_PROCESS, **(run_config or {})}))  # YAML reads JSON
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "definitions",
        "-d",
        str(project),
        "-j",
        job,
        "-c",
        str(config_path),
        "--tags",
        json.dumps({"dagster/partition": week, "kto_pipeline/trigger": trigger}),
    ]
    with log.open("w") as fh:
        return subprocess.run(cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
