"""Where a run's steps execute, chosen by the deployment's environment: Dagster's default executor,
or dagster-ray's `ray_executor` (each step a Ray job on the cluster).

Off by default: with `executor` unset (or "default") the code location has no executor of its
own and Dagster uses its multiprocess executor, exactly as before. With "ray", every step of
every job is submitted to the job server at `ray_jobs_address` as `dagster api execute_step`; the
step process then needs what the run worker has: this project importable (the cluster's image,
or PYTHONPATH to a checkout every node sees), the same Dagster instance (DAGSTER_HOME and, in a
real deployment, Postgres through DAGSTER_PG_*) and the same KTO_PIPELINE_* settings, which are
forwarded from the run worker's environment. The trainer's own multi-node launch (its `ray`
launcher) is independent of this choice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from kto_pipeline.config.deployment import DAGSTER_HOME, PREFIX, DeploymentSettings

EXECUTORS = ("default", "ray")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The instance's storage settings (resources/instance_storage.py reads them in every process).
_DAGSTER_VARIABLES = (
    DAGSTER_HOME,
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)


def forwarded_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables a step job takes from the run worker: the instance's and every KTO_PIPELINE_ one set."""
    environ = os.environ if environ is None else environ
    return sorted(name for name in environ if name in _DAGSTER_VARIABLES or name.startswith(PREFIX))


def executor_from_env(
    settings: DeploymentSettings | None = None, environ: Mapping[str, str] | None = None
) -> dg.ExecutorDefinition | None:
    """None (Dagster's default executor) unless the deployment asks for the ray executor."""
    s = settings or DeploymentSettings.from_env(environ)
    if s.executor not in EXECUTORS:
        raise ValueError(f"{DeploymentSettings.variable('executor')}={s.executor!r}: expected one of {EXECUTORS}")
    if s.executor == "default":
        return None
    if not s.ray_jobs_address:
        raise ValueError(
            f"{DeploymentSettings.variable('executor')}=ray needs {DeploymentSettings.variable('ray_jobs_address')} "
            "(the Ray cluster's job server, http://<head>:8265)"
        )
    from dagster_ray import ray_executor

    return ray_executor.configured(
        {
            "ray": {
                "address": s.ray_jobs_address,
                "env_vars": forwarded_variables(environ),
                "runtime_env": {"env_vars": {"PYTHONPATH": PROJECT_ROOT}},
            }
        },
        name="ray_executor",
    )
