"""The KTO trainer: a GPU (or CPU) training process launched through Dagster Pipes."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from kto_pipeline.models.registry import ModelRegistry
from kto_pipeline.train.spec import TrainSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRAINER_MODULE = "resources.trainer_process"


class TrainingProcessKilled(Exception):
    """The training process died without reporting an error of its own: killed by a signal (the
    OOM killer, a preempted node, `kill -9`) or crashed in native code. Its last saved Trainer
    checkpoint survives in the week's work folder, so `kto_checkpoint`'s retry policy starts the
    process again and it resumes from that step. (A plain exception: the retry policy acts on it.)"""


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class TrainerPipesClient(dg.PipesSubprocessClient):
    """`PipesSubprocessClient` that tells a killed training process from a failed one.

    The stock client raises the same `DagsterPipesExecutionError` for both. Here, a process
    that closed its Pipes channel with a Python exception (bad data, CUDA out of memory, a bug)
    and exited non-zero failed for a reason a retry would meet again: it raises
    `dg.Failure(allow_retries=False)`, which bypasses the retry policy. A process that ended by a
    signal, or never closed the channel (SIGKILL, segfault; under `accelerate launch` the launcher
    exits 1 after a rank was killed, and stops rank 0 before it reports the broken collective:
    see trainer_process._wait_for_the_launcher), raises `TrainingProcessKilled`, which the retry
    policy retries.
    """

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        command: Sequence[str],
        extras: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        with dg.open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=extras,
        ) as session:
            process = subprocess.Popen(
                list(command),
                cwd=cwd or self.cwd,
                env={**os.environ, **self.env, **(env or {}), **session.get_bootstrap_env_vars()},
            )
            context.log.info(f"training process started, pid {process.pid}")
            try:
                process.wait()
            except dg.DagsterExecutionInterruptedError:
                if self.forward_termination:
                    context.log.info("[pipes] execution interrupted, sending SIGINT to the training process")
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=self.termination_timeout_seconds)
                raise
        # The session has closed: every message the process wrote has been handled by now.
        code, closed = process.returncode, session.message_handler.received_closed_message
        if code > 0 and closed:
            raise dg.Failure(
                description=f"the training process failed ({_exit_status(code)}); see its error above. "
                "Not retried: a retry would fail the same way.",
                metadata={"exit_code": code},
                allow_retries=False,
            )
        if code != 0 or not closed:
            raise TrainingProcessKilled(
                f"the training process (pid {process.pid}) ended ({_exit_status(code)}) without closing its Pipes session: "
                "killed (OOM killer, preemption, kill -9) or crashed. Its last saved checkpoint is kept; a retry resumes from it."
            )
        return dg.PipesClientCompletedInvocation(session)


class KTOTrainerResource(dg.ConfigurableResource):
    """Where and how a week's KTO training runs.

    The training is its own process (`python -m resources.trainer_process`), started through
    Dagster Pipes: its log lines and metrics stream into the run, and it can move to another
    machine by swapping the Pipes client. `launcher: accelerate` runs it under
    `accelerate launch --num_processes N` (multi-GPU, or several CPU processes with gloo).
    """

    base_model: str = Field(
        description="The model every checkpoint chain starts from: hub name or local path, e.g. Qwen/Qwen2.5-0.5B-Instruct"
    )
    models_root: str = Field(description="Local folder of checkpoints, trainer work folders, reports and promotions")
    device: str | None = Field(default=None, description="cuda or cpu; default: the GPU when there is one")
    launcher: Literal["python", "accelerate", "ray"] = Field(
        default="python",
        description="python: one process; accelerate: accelerate launch; ray: accelerate launch on `machines` nodes of a Ray cluster",
    )
    num_processes: int = Field(
        default=1, description="accelerate launcher: processes (GPUs); ray launcher: processes per machine"
    )
    ray_address: str | None = Field(
        default=None,
        description="ray launcher: the cluster's job server (dashboard) address, e.g. http://raycluster-head-svc:8265",
    )
    machines: int = Field(default=2, description="ray launcher: nodes to train on, one accelerate launch each")
    cpus_per_machine: float = Field(default=1.0, description="ray launcher: CPUs each machine reserves")
    gpus_per_machine: float = Field(default=0.0, description="ray launcher: GPUs each machine reserves")
    ray_python: str = Field(
        default="python", description="ray launcher: the Python on the cluster's nodes that has this project installed"
    )
    accelerate_args: list[str] = Field(
        default_factory=list, description="Extra accelerate launch arguments, e.g. --mixed_precision bf16"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for the training process (CUDA_VISIBLE_DEVICES, …); secrets belong in the deployment's environment",
    )
    recipe: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the training recipe (kto_pipeline.train.KTORecipe): beta, learning_rate, full_finetune, …",
    )
    threads: int | None = Field(
        default=None, description="CPU threads per training process (OMP_NUM_THREADS); default: torch's choice"
    )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.models_root)

    def command(self, spec_path: Path) -> list[str]:
        if self.launcher == "ray":
            raise ValueError("the ray launcher submits a Ray job: see ray_job()")
        entry = ["-m", TRAINER_MODULE, "--spec", str(spec_path)]
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

    def ray_job(self, spec_path: Path) -> dict[str, Any]:
        """The Ray job (`JobSubmissionClient.submit_job` parameters) of the ray launcher: its driver
        places one `accelerate launch` per machine and relays rank 0's Pipes messages."""
        if self.ray_address is None:
            raise ValueError("the ray launcher needs ray_address (the cluster's job server, http://<head>:8265)")
        entrypoint = [
            self.ray_python, "-m", "kto_pipeline.train.cluster_launch",
            "--spec", str(spec_path), "--module", TRAINER_MODULE,
            "--machines", str(self.machines), "--processes-per-machine", str(self.num_processes),
            "--cpus-per-machine", str(self.cpus_per_machine), "--gpus-per-machine", str(self.gpus_per_machine),
        ]  # fmt: skip
        if self.accelerate_args:
            entrypoint += ["--", *self.accelerate_args]
        # The driver itself needs no CPU: the machines' bundles hold the cluster's resources.
        return {"entrypoint": shlex.join(entrypoint), "runtime_env": {"env_vars": self.process_env()}}

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

    def train(self, context: dg.AssetExecutionContext, spec: TrainSpec, work_dir: Path) -> dg.MaterializeResult:
        """Run one training and return its materialization. The spec's own recipe overrides win
        over the resource's; the resource's device, when set, over the spec's."""
        work_dir.mkdir(parents=True, exist_ok=True)
        spec = dataclasses.replace(spec, recipe={**self.recipe, **spec.recipe}, device=self.device or spec.device)
        spec_path = work_dir / "spec.json"
        spec_path.write_text(spec.to_json())
        if context.retry_number:
            context.log.warning(
                f"retry {context.retry_number}: training resumes from the last saved checkpoint under "
                f"{work_dir / 'trainer'} when the data and recipe are unchanged"
            )
        if self.launcher == "ray":
            # Imported here: without a cluster nothing loads ray or dagster-ray.
            from resources.ray_trainer_client import RayTrainerPipesClient

            job = self.ray_job(spec_path)
            context.log.info(f"training job on the Ray cluster at {self.ray_address}: {job['entrypoint']}")
            client = RayTrainerPipesClient(address=self.ray_address, poll_interval=0.5)
            return client.run(context=context, submit_job_params=job).get_materialize_result()
        client = TrainerPipesClient(env=self.process_env(), cwd=str(PROJECT_ROOT), forward_termination=True)
        command = self.command(spec_path)
        context.log.info(f"training process: {' '.join(command)}")
        return client.run(command=command, context=context).get_materialize_result()
