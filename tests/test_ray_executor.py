"""The step executor is chosen by the deployment's environment: Dagster's default unless the
deployment names dagster-ray's ray_executor, which then submits every step as a Ray job."""

import dagster as dg
import pytest

from kto_pipeline.config.deployment import DeploymentSettings, settings_env
from resources.ray_executor import executor_from_env, forwarded_variables


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
