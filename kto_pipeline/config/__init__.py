"""Config: the one place the deployment's settings and their environment variables are named and read.

Step settings (thresholds, ratios, recipes) are not here: each stage's config dataclass declares
them, with a help text per field, and the Dagster layer builds its run and resource config from
those dataclasses. What is here is what differs between deployments: where dumps, tables and
models live, which scorer, teacher and base model to use, how training is launched.
"""

from kto_pipeline.config.deployment import (
    DAGSTER_HOME,
    DEFAULT_BASE_MODEL,
    SECRET_VARIABLES,
    DeploymentSettings,
    dagster_home_folder,
    instance_home,
    settings_env,
    shell_assignments,
)

__all__ = [
    "DAGSTER_HOME",
    "DEFAULT_BASE_MODEL",
    "SECRET_VARIABLES",
    "DeploymentSettings",
    "dagster_home_folder",
    "instance_home",
    "settings_env",
    "shell_assignments",
]
