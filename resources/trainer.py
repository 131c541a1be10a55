"""The KTO trainer: a GPU (or CPU) training process launched through Dagster Pipes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.registry import ModelRegistry

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KTOTrainerResource(dg.ConfigurableResource):
    """Where and how a week's KTO training runs.

    The training is its own process (`python -m resources.trainer_process`), started through
    Dagster Pipes: its log lines and metrics stream into the run, and it can move to another
    machine by swapping the Pipes client. `launcher: accelerate` runs it under
    `accelerate launch --num_processes N` (multi-GPU, or several CPU processes with gloo).
    """

    base_model: str = Field(description="The model every checkpoint chain starts from: hub name or local path, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    models_root: str = Field(description="Local folder of checkpoints, trainer work folders, reports and promotions")
    device: str | None = Field(default=None, description="cuda or cpu; default: the GPU when there is one")
    launcher: Literal["python", "accelerate"] = Field(default="python", description="python: one process; accelerate: accelerate launch")
    num_processes: int = Field(default=1, description="accelerate launcher: processes (GPUs)")
    accelerate_args: list[str] = Field(default_factory=list, description="Extra accelerate launch arguments, e.g. --mixed_precision bf16")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the training process (CUDA_VISIBLE_DEVICES, …); secrets belong in the deployment's environment")
    recipe: dict[str, Any] = Field(default_factory=dict, description="Overrides of the training recipe (kto_pipeline.training.KTORecipe): beta, learning_rate, full_finetune, …")
    threads: int | None = Field(default=None, description="CPU threads per training process (OMP_NUM_THREADS); default: torch's choice")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.models_root)

    def command(self, spec_path: Path) -> list[str]:
        entry = ["-m", "resources.trainer_process", "--spec", str(spec_path)]
        if self.launcher == "python":
            return [sys.executable, *entry]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(self.num_processes)]
        if self.num_processes > 1:
            # accelerate's --cpu starts one process unless mpirun is there; --multi_gpu starts N
            # ranks, and on a CPU-only box (or device cpu) they train over gloo.
            launch.append("--multi_gpu")
        elif not self._uses_cuda():
            launch.append("--cpu")
        return [*launch, *self.accelerate_args, *entry]

    def _uses_cuda(self) -> bool:
        if self.device is not None:
            return self.device.startswith("cuda")
        import torch

        return torch.cuda.is_available()

    def process_env(self) -> dict[str, str]:
        env = {
            "HF_HUB_DISABLE_TELEMETRY": "1",
            # The project's packages (kto_pipeline, resources) import from the checkout too.
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        return {**env, **self.env}

    def train(self, context: dg.AssetExecutionContext, spec: dict[str, Any], work_dir: Path) -> dg.MaterializeResult:
        """Run one training (spec: see kto_pipeline.training.run_spec) and return its materialization."""
        work_dir.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "recipe": {**self.recipe, **spec.get("recipe", {})}}
        if self.device:
            spec["device"] = self.device
        spec_path = work_dir / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
        client = dg.PipesSubprocessClient(env=self.process_env(), cwd=str(PROJECT_ROOT), forward_termination=True)
        command = self.command(spec_path)
        context.log.info(f"training process: {' '.join(command)}")
        return client.run(command=command, context=context).get_materialize_result()
