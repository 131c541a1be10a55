"""The step executor is chosen by the deployment's environment: Dagster's default unless the
deployment names dagster-ray's ray_executor, which then submits every step as a Ray job."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from conftest import PROJECT
from kto_pipeline.config.deployment import DeploymentSettings, settings_env
from kto_pipeline.devtools.sample_data import WEEKS
from resources.ray_executor import executor_from_env, forwarded_variables

WEEK = WEEKS[0]


def test_without_the_setting_the_code_location_keeps_dagsters_default_executor():
    assert executor_from_env(environ={}) is None
    assert executor_from_env(environ=settings_env(executor="default")) is None
    from definitions import defs  # loaded with this test process's environment: no executor set

    assert DeploymentSettings.from_env().executor == "default"
    assert defs.executor is None
    job = defs.get_job_def("retrain_job")
    assert job.executor_def is dg.multi_or_in_process_executor


def test_the_ray_executor_submits_steps_to_the_configured_job_server_with_the_settings():
    environ = {
        **settings_env(executor="ray", ray_jobs_address="http://raycluster-head-svc:8265", base_model="/m"),
        "DAGSTER_HOME": "/opt/dagster/home",
        "UNRELATED": "x",
    }
    executor = executor_from_env(environ=environ)
    assert executor is not None and executor.name == "ray_executor"
    # The executor's resolved config: the job server, and the variables a step process needs.
    config = executor.apply_config_mapping({}).value["config"]
    assert config["ray"]["address"] == "http://raycluster-head-svc:8265"
    assert config["ray"]["env_vars"] == [
        "DAGSTER_HOME",
        DeploymentSettings.variable("base_model"),
        DeploymentSettings.variable("executor"),
        DeploymentSettings.variable("ray_jobs_address"),
    ]
    assert forwarded_variables({"UNRELATED": "x"}) == []


def test_a_bad_executor_setting_fails_with_what_to_set():
    with pytest.raises(ValueError, match="expected one of"):
        executor_from_env(environ=settings_env(executor="k8s"))
    with pytest.raises(ValueError, match=DeploymentSettings.variable("ray_jobs_address")):
        executor_from_env(environ=settings_env(executor="ray"))


@pytest.mark.slow
def test_with_the_ray_executor_a_runs_steps_execute_as_ray_jobs_on_a_loopback_cluster(
    tmp_path, sample_dumps, monkeypatch
):
    """The real code location, KTO_PIPELINE_EXECUTOR=ray: `dagster asset materialize` hands the
    step to dagster-ray's step handler, which submits it to the cluster's job server; the step
    process (on a Ray node) writes the table and its events to the same instance."""
    from test_ray_training import JobServerCluster

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    # The nodes' PATH has this environment's `dagster`, as a deployment image has it.
    node_env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    with JobServerCluster(nodes=2, cpus_per_node=1, env=node_env) as cluster:
        settings = settings_env(
            executor="ray",
            ray_jobs_address=cluster.job_address,
            dumps=sample_dumps,
            storage=tmp_path / "warehouse",
            models=tmp_path / "models",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "definitions"]
            + ["--select", "raw_feedback,raw_feedback_quarantine", "--partition", WEEK],
            cwd=PROJECT,
            env={**os.environ, "DAGSTER_HOME": str(home), **settings},
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-5000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml's storage reads it
    instance = dg.DagsterInstance.from_config(str(home))
    [run] = instance.get_runs()
    events = instance.all_logs(run.run_id)
    started = [e for e in events if e.dagster_event and e.dagster_event.event_type_value == "STEP_WORKER_STARTING"]
    assert [e.step_key for e in started] == ["raw_feedback"]
    assert 'Executing step "raw_feedback" in Ray job dagster-step-' in started[0].user_message
    materialized = {
        e.dagster_event.asset_key.to_user_string()
        for e in events
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert materialized == {"raw_feedback", "raw_feedback_quarantine"}
    assert (tmp_path / "warehouse" / "raw_feedback" / f"{WEEK}.parquet").exists()
