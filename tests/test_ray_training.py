"""kto_checkpoint on a real multi-node Ray cluster on loopback: the trainer resource's `launcher: ray`
submits a Ray job through dagster-ray's Pipes client; the job's driver runs one `accelerate launch`
per node (STRICT_SPREAD placement group, gloo on CPU), rank 0 reports through Pipes.

What is equal to the local path, and why: a 2-machine Ray training has world size 2 with one rank
per node, so it must be bit-identical to `launcher: accelerate` with 2 processes on one machine
(same spec, same seed, same sharding of the same batches, the same two-rank all-reduce): same
global_step, same data counts, same adapter weights. Against a single process it differs by
design (twice the effective batch: half the optimizer steps).
"""

import contextlib
import signal
import subprocess
import sys
import threading
import time
from unittest import mock

import dagster as dg
import psutil
import pytest
import torch
from safetensors.torch import load_file
from test_training_assets import RECIPE, WEEK1, week_rows
from test_training_resume import RESUME_RECIPE, ROWS, _train_week

from conftest import materialization_metadata as _meta
from kto_pipeline.devtools import ray_cluster
from kto_pipeline.devtools.ray_cluster import LocalRayCluster, free_port
from kto_pipeline.models.manifest import read_manifest
from kto_pipeline.models.registry import ModelRegistry
from kto_pipeline.train import TRAINER_DIR, latest_checkpoint
from resources.trainer import KTOTrainerResource

pytestmark = pytest.mark.slow  # a cluster start and a few multi-process trainings: minutes


class JobServerCluster(LocalRayCluster):
    """A LocalRayCluster whose head also runs Ray's job server (the dashboard process and its job
    module), which job submission (dagster-ray's Pipes client, ray_executor) needs: LocalRayCluster
    starts heads with `--include-dashboard=false`, which loads no job module. Until it has an
    option for this, the head's `ray start` arguments are amended on their way to Popen."""

    def _start_node(self, index: int) -> None:
        if index != 0:
            return super()._start_node(index)
        self.dashboard_port = free_port()
        popen = subprocess.Popen

        def with_job_server(args, *a, **kw):
            args = [x for x in args if not x.startswith(("--include-dashboard", "--dashboard-port"))]
            args += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
            return popen(args, *a, **kw)

        with mock.patch.object(ray_cluster.subprocess, "Popen", with_job_server):
            super()._start_node(0)

    @property
    def job_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


@pytest.fixture(scope="module")
def two_nodes():
    """A 2-node loopback cluster (1 CPU each) with a job server, shared by this module's 2-node tests."""
    with JobServerCluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster


def _trainer(base, models, **kwargs) -> KTOTrainerResource:
    return KTOTrainerResource(base_model=base, models_root=str(models), device="cpu", threads=1, **kwargs)


def _ray_trainer(base, models, cluster, recipe) -> KTOTrainerResource:
    return _trainer(
        base,
        models,
        launcher="ray",
        ray_address=cluster.job_address,
        machines=2,
        recipe=recipe,
        ray_python=sys.executable,
    )


def _week(tmp_path, rows: int):
    storage = tmp_path / "warehouse"
    (storage / "balanced_feedback").mkdir(parents=True)
    week_rows(WEEK1, rows).to_parquet(storage / "balanced_feedback" / f"{WEEK1}.parquet", index=False)
    return storage


def _adapter(models) -> dict[str, torch.Tensor]:
    return load_file(str(ModelRegistry(models).checkpoint_dir(WEEK1) / "adapter_model.safetensors"))


def _retries_and_failures(result) -> list[tuple[str, str]]:
    return [
        (e.event_type_value, str(e.event_specific_data.error))
        for e in result.all_events
        if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")
    ]


def test_two_machines_on_a_two_node_ray_cluster_train_exactly_like_two_local_processes(tmp_path, tiny_base):
    storage = _week(tmp_path, 48)
    recipe = {**RECIPE, "max_steps": 4}
    with JobServerCluster(nodes=2, cpus_per_node=1) as cluster:
        t0 = time.monotonic()
        result = _train_week(
            storage, _ray_trainer(tiny_base, tmp_path / "ray", cluster, recipe), dg.DagsterInstance.ephemeral()
        )
        ray_s = time.monotonic() - t0
    assert result.success, _retries_and_failures(result)
    meta = _meta(result, "kto_checkpoint")  # one materialization: rank 0 alone reported
    assert meta["Ray Job ID"].startswith("pipes-")
    manifest = read_manifest(ModelRegistry(tmp_path / "ray").checkpoint_dir(WEEK1))
    assert manifest.kto.world_size == 2 and manifest.global_step == 4

    t0 = time.monotonic()
    local = _train_week(
        storage,
        _trainer(tiny_base, tmp_path / "local", launcher="accelerate", num_processes=2, recipe=recipe),
        dg.DagsterInstance.ephemeral(),
    )
    local_s = time.monotonic() - t0
    assert local.success
    local_meta = _meta(local, "kto_checkpoint")
    for key in ("global_step", "train_rows", "eval_rows", "desirable_weight", "undesirable_weight"):
        assert meta[key] == local_meta[key], key
    assert meta["data"] == local_meta["data"]
    ray_weights, local_weights = _adapter(tmp_path / "ray"), _adapter(tmp_path / "local")
    assert ray_weights.keys() == local_weights.keys()
    for name, tensor in local_weights.items():
        assert torch.equal(ray_weights[name], tensor), name
    print(f"\n2 machines on Ray {ray_s:.0f} s (cluster start excluded); 2 local processes {local_s:.0f} s")


def test_an_error_inside_training_on_the_cluster_fails_at_once_without_a_retry(tmp_path, two_nodes):
    """Every rank fails the same way (the base model is not there): rank 0 closes its Pipes session
    with the error, the job driver passes it on, and the retry policy is bypassed."""
    storage = _week(tmp_path, 48)
    missing = str(tmp_path / "no-such-model")
    result = _train_week(
        storage, _ray_trainer(missing, tmp_path / "models", two_nodes, RECIPE), dg.DagsterInstance.ephemeral()
    )
    problems = _retries_and_failures(result)
    assert not result.success
    assert [kind for kind, _ in problems] == ["STEP_FAILURE"], problems
    assert "Not retried" in problems[0][1] and "exit code 1" in problems[0][1], problems


class KillOnTheCluster(threading.Thread):
    """Once the training saved a complete checkpoint, SIGKILLs either a non-head node running one of
    its ranks (raylet, workers, the launcher and the rank: the whole machine), or only the process
    of rank `rank` (the OOM killer on one machine)."""

    def __init__(self, cluster: LocalRayCluster, work_dir, rank: int | None = None, timeout_s: float = 300.0):
        super().__init__(daemon=True)
        self.cluster, self.trainer_dir, self.rank, self.timeout_s = cluster, work_dir / TRAINER_DIR, rank, timeout_s
        self.killed: str | None = None
        self.saved_step: int | None = None
        self.error: str | None = None

    def _ranks(self) -> list[tuple[int, psutil.Process]]:
        """(node index, process) of every training rank on the cluster."""
        found = []
        for index in range(self.cluster.nodes):
            for pid in self.cluster.worker_pids(index):
                try:
                    process = psutil.Process(pid)
                    if "resources.trainer_process" in " ".join(process.cmdline()):
                        found.append((index, process))
                except psutil.Error:
                    continue
        return found

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while latest_checkpoint(self.trainer_dir) is None:
            if time.monotonic() > deadline:
                self.error = "no checkpoint appeared"
                return
            time.sleep(0.05)
        # Freeze this training's ranks at once (one pass over the process table), so the few
        # remaining steps cannot finish the run while the slower per-node scan prepares the kill
        # (CI once saw the run end first at load 10); the survivors resume after the kill.
        spec_dir = str(self.trainer_dir.parent)
        frozen = []
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if "resources.trainer_process" in line and spec_dir in line:
                frozen.append(process)
        for process in frozen:
            with contextlib.suppress(psutil.Error):
                process.suspend()
        try:
            self._kill(self._ranks())
        finally:
            for process in frozen:
                with contextlib.suppress(psutil.Error):
                    process.resume()

    def _kill(self, ranks: list[tuple[int, psutil.Process]]) -> None:
        if self.rank is None:
            nodes = sorted({index for index, _ in ranks if index != 0})
            if not nodes:
                self.error = f"no non-head node runs a training rank ({ranks})"
                return
            self.cluster.kill_worker_node(nodes[0])
            self.killed = f"node {nodes[0]}"
        else:
            chosen = [p for _, p in ranks if p.environ().get("RANK") == str(self.rank)]
            if len(chosen) != 1:
                self.error = f"expected one process of rank {self.rank}, found {len(chosen)}"
                return
            chosen[0].send_signal(signal.SIGKILL)
            self.killed = f"rank {self.rank} (pid {chosen[0].pid})"
        self.saved_step = int(latest_checkpoint(self.trainer_dir).name.split("-")[1])


def _assert_killed_then_resumed(result, killer: KillOnTheCluster) -> None:
    assert killer.error is None, killer.error
    problems = _retries_and_failures(result)
    assert result.success, problems
    assert [kind for kind, _ in problems] == ["STEP_UP_FOR_RETRY"], problems
    assert "TrainingProcessKilled" in problems[0][1], problems
    meta = _meta(result, "kto_checkpoint")
    assert meta["resumed_from_step"] == killer.saved_step > 0
    assert meta["global_step"] == 24  # 96 rows, batch 4, 2 epochs, two ranks: half of 48 steps
    assert meta["healthy"] is True


def test_a_sigkilled_rank_on_another_machine_is_retried_and_resumed(tmp_path, tiny_base, two_nodes):
    """Rank 1 alone is killed: its launcher exits 1 like any failure, and rank 0 reports a gloo
    "Connection reset by peer" of its own; the job driver reads that as a lost peer."""
    storage, models = _week(tmp_path, ROWS), tmp_path / "models"
    killer = KillOnTheCluster(two_nodes, ModelRegistry(models).work_dir(WEEK1), rank=1)
    killer.start()
    result = _train_week(
        storage, _ray_trainer(tiny_base, models, two_nodes, RESUME_RECIPE), dg.DagsterInstance.ephemeral()
    )
    killer.join(timeout=30)
    _assert_killed_then_resumed(result, killer)


def test_a_killed_node_fails_the_attempt_and_the_retry_resumes_from_the_checkpoint(tmp_path, tiny_base):
    """Three nodes: two train, the third stands in for the replacement a real cluster (KubeRay)
    brings up after a node loss."""
    storage, models = _week(tmp_path, ROWS), tmp_path / "models"
    with JobServerCluster(nodes=3, cpus_per_node=1) as cluster:
        killer = KillOnTheCluster(cluster, ModelRegistry(models).work_dir(WEEK1))
        killer.start()
        result = _train_week(
            storage, _ray_trainer(tiny_base, models, cluster, RESUME_RECIPE), dg.DagsterInstance.ephemeral()
        )
        killer.join(timeout=30)
    _assert_killed_then_resumed(result, killer)
