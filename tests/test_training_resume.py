"""A training process SIGKILLed mid-run (the OOM killer, a preempted node) is retried by
`kto_checkpoint`'s retry policy and resumes from its last saved checkpoint, through Dagster:
the same number of steps and the same adapter weights as a run that was never interrupted."""

import dataclasses
import math
import signal
import sys
import textwrap
import threading
import time

import dagster as dg
import psutil
import pytest
import torch
from safetensors.torch import load_file
from test_training_assets import RECIPE, WEEK1, _meta, week_rows

from assets.partitions import feedback_weeks
from assets.training import kto_checkpoint
from kto_pipeline.models.registry import ModelRegistry
from kto_pipeline.train import TRAINER_DIR, TrainSpec, latest_checkpoint, run_spec
from resources import ParquetIOManager
from resources.trainer import KTOTrainerResource, TrainerPipesClient

ROWS, HELD_OUT = 112, 16  # week_rows keeps its last 16 rows for the eval split
BATCH, EPOCHS, SAVE_STEPS = 4, 2, 8
EXPECTED_STEPS = math.ceil((ROWS - HELD_OUT) / BATCH) * EPOCHS  # 48: a few seconds after the first checkpoint
RESUME_RECIPE = {
    **{k: v for k, v in RECIPE.items() if k != "max_steps"},
    "num_train_epochs": EPOCHS,
    "per_device_train_batch_size": BATCH,
    "save_steps": SAVE_STEPS,
    "logging_steps": 4,
}


def _trainer_processes(rank: int | None = None) -> list[psutil.Process]:
    """The training processes among this test's descendants (the run's Pipes children); with
    `rank`, the one of that rank under `accelerate launch`."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "resources.trainer_process" in " ".join(child.cmdline()) and (
                rank is None or child.environ().get("RANK") == str(rank)
            ):
                found.append(child)
        except psutil.Error:
            pass
    return found


class KillAfterFirstCheckpoint(threading.Thread):
    """Watches the week's work folder; once the trainer has saved a complete checkpoint, SIGKILLs it."""

    def __init__(self, work_dir, rank: int | None = None, timeout_s: float = 240.0):
        super().__init__(daemon=True)
        self.trainer_dir, self.rank, self.timeout_s = work_dir / TRAINER_DIR, rank, timeout_s
        self.killed_pid: int | None = None
        self.saved_step: int | None = None  # the newest complete checkpoint once the process is dead
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while latest_checkpoint(self.trainer_dir) is None:
            if time.monotonic() > deadline:
                self.error = "no checkpoint appeared"
                return
            time.sleep(0.02)
        processes = _trainer_processes(self.rank)
        if len(processes) != 1:
            self.error = f"expected one training process, found {len(processes)}"
            return
        [process] = processes
        process.send_signal(signal.SIGKILL)
        # Wait for the death without reaping (psutil's wait() would reap the child, and Popen
        # would then read exit code 0): the run's Pipes client must see the SIGKILL.
        while time.monotonic() < deadline:
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)
        self.killed_pid = process.pid
        self.saved_step = int(latest_checkpoint(self.trainer_dir).name.split("-")[1])


def _train_week(storage, trainer, instance):
    upstream = [
        dg.AssetSpec(name, partitions_def=feedback_weeks).with_io_manager_key("io_manager")
        for name in ("balanced_feedback", "synthetic_topup")
    ]
    return dg.materialize(
        [kto_checkpoint, *upstream],
        selection=[kto_checkpoint],
        partition_key=WEEK1,
        resources={"io_manager": ParquetIOManager(base_path=str(storage)), "trainer": trainer},
        instance=instance,
        raise_on_error=False,
    )


def _adapter(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def _uninterrupted(spec: TrainSpec, root) -> dict:
    """The same spec, trained in this process without interruption (one torch thread, like the child)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_spec(
            dataclasses.replace(spec, output_dir=str(root / "out"), work_dir=str(root / "work")), on_log=None
        )
    finally:
        torch.set_num_threads(threads)
    return {
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
        "adapter": _adapter(root / "out"),
    }


def test_a_sigkilled_training_process_resumes_from_its_last_checkpoint_on_retry(tmp_path, tiny_base):
    storage, models = tmp_path / "warehouse", tmp_path / "models"
    (storage / "balanced_feedback").mkdir(parents=True)
    week_rows(WEEK1, ROWS).to_parquet(storage / "balanced_feedback" / f"{WEEK1}.parquet", index=False)
    registry = ModelRegistry(models)
    trainer = KTOTrainerResource(
        base_model=tiny_base, models_root=str(models), device="cpu", recipe=RESUME_RECIPE, threads=1
    )
    instance = dg.DagsterInstance.ephemeral()

    killer = KillAfterFirstCheckpoint(registry.work_dir(WEEK1))
    killer.start()
    t0 = time.monotonic()
    result = _train_week(storage, trainer, instance)
    wall_s = time.monotonic() - t0
    killer.join(timeout=30)
    assert killer.error is None, killer.error
    assert killer.killed_pid is not None and 0 < killer.saved_step < EXPECTED_STEPS

    # Dagster saw the kill as a failure its retry policy acts on, retried once, and the retry resumed.
    events = [e for e in result.all_events if e.step_key == "kto_checkpoint"]
    problems = [
        (e.event_type_value, str(e.event_specific_data.error))
        for e in events
        if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")
    ]
    assert result.success, problems
    assert [kind for kind, _ in problems] == ["STEP_UP_FOR_RETRY"], problems
    assert "TrainingProcessKilled" in problems[0][1] and "SIGKILL" in problems[0][1], problems
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert (
        f"an earlier attempt saved checkpoint-{killer.saved_step}: training resumes from it if the data and recipe are unchanged"
        in messages
    )
    assert f"resumed from step {killer.saved_step}; finished at step {EXPECTED_STEPS}" in messages
    meta = _meta(result, "kto_checkpoint")
    assert meta["resumed_from_step"] == killer.saved_step and meta["global_step"] == EXPECTED_STEPS
    assert meta["healthy"] is True

    # The same spec, never interrupted: same steps and bit-identical adapter weights.
    spec = TrainSpec.from_json((registry.work_dir(WEEK1) / "spec.json").read_text())
    reference = _uninterrupted(spec, tmp_path / "reference")
    assert reference["global_step"] == EXPECTED_STEPS and reference["resumed_from_step"] is None
    resumed = _adapter(registry.checkpoint_dir(WEEK1))
    assert resumed.keys() == reference["adapter"].keys()
    for name, tensor in reference["adapter"].items():
        assert torch.equal(resumed[name], tensor), name
    print(
        f"\n{EXPECTED_STEPS} steps; SIGKILLed pid {killer.killed_pid} after checkpoint-{killer.saved_step}; "
        f"killed + retried run {wall_s:.0f} s"
    )


@pytest.mark.slow
def test_a_sigkilled_rank_under_accelerate_is_resumed_too(tmp_path, tiny_base):
    """Rank 1 killed: rank 0's collective fails first ("Connection reset by peer"); it must not be
    reported as an error of its own (not retried), but as a killed training."""
    storage, models = tmp_path / "warehouse", tmp_path / "models"
    (storage / "balanced_feedback").mkdir(parents=True)
    week_rows(WEEK1, ROWS).to_parquet(storage / "balanced_feedback" / f"{WEEK1}.parquet", index=False)
    trainer = KTOTrainerResource(
        base_model=tiny_base,
        models_root=str(models),
        device="cpu",
        launcher="accelerate",
        num_processes=2,
        recipe=RESUME_RECIPE,
        threads=1,
    )
    killer = KillAfterFirstCheckpoint(ModelRegistry(models).work_dir(WEEK1), rank=1)
    killer.start()
    result = _train_week(storage, trainer, dg.DagsterInstance.ephemeral())
    killer.join(timeout=30)
    assert killer.error is None, killer.error
    kinds = [
        e.event_type_value for e in result.all_events if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")
    ]
    assert result.success and kinds == ["STEP_UP_FOR_RETRY"], kinds
    meta = _meta(result, "kto_checkpoint")
    assert meta["resumed_from_step"] == killer.saved_step > 0
    assert meta["global_step"] == EXPECTED_STEPS // 2  # two ranks: half the optimizer steps


# How the Pipes client classifies a dead training process, with toy children (no torch: fast).
KILLS_ITSELF_ONCE = """
    import os, pathlib, signal, sys
    from dagster_pipes import open_dagster_pipes
    marker = pathlib.Path(sys.argv[1])
    with open_dagster_pipes() as pipes:
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        pipes.report_asset_materialization(metadata={"attempt": 2})
"""
RAISES = """
    from dagster_pipes import open_dagster_pipes
    with open_dagster_pipes():
        raise ValueError("the training rows lack a label column")
"""


def _run_toy(script: str, *args: str):
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def toy(context: dg.AssetExecutionContext):
        command = [sys.executable, "-c", textwrap.dedent(script), *args]
        return TrainerPipesClient().run(context=context, command=command).get_materialize_result()

    result = dg.materialize([toy], raise_on_error=False)
    kinds = [
        e.event_type_value for e in result.all_events if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")
    ]
    return result, kinds


def test_a_killed_process_is_retried(tmp_path):
    result, kinds = _run_toy(KILLS_ITSELF_ONCE, str(tmp_path / "attempted"))
    assert result.success and kinds == ["STEP_UP_FOR_RETRY"]
    [retry] = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert "TrainingProcessKilled" in str(retry.event_specific_data.error) and "SIGKILL" in str(
        retry.event_specific_data.error
    )
    [mat] = result.get_asset_materialization_events()
    assert mat.materialization.metadata["attempt"].value == 2


def test_a_process_that_raises_fails_at_once():
    result, kinds = _run_toy(RAISES)
    assert not result.success and kinds == ["STEP_FAILURE"]  # the retry policy is bypassed
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "exit code 1" in str(failure.event_specific_data.error) and "Not retried" in str(
        failure.event_specific_data.error
    )
