"""The deployment settings: every `KTO_PIPELINE_*` environment variable, named and read here only.

Each setting is declared once, with its variable, its default and its help text. The code
location (definitions.py) reads them with `DeploymentSettings.from_env()`; the CLI and the
simulation write them for the processes they start with `settings_env(...)`, by field name, so
no other module spells a variable's name. Secrets are the exception by design: only their
variable names live here (`SECRET_VARIABLES`), and Dagster's `EnvVar` reads them at run time,
so a key is never stored in config or in a run's record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "KTO_PIPELINE_"
DAGSTER_HOME = "DAGSTER_HOME"
# A production default a user would pass; on a machine without hub access set a local path.
DEFAULT_BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"

SCORER_API_KEY = f"{PREFIX}SCORER_API_KEY"
TEACHER_API_KEY = f"{PREFIX}TEACHER_API_KEY"
# The capture service's bearer tokens: `name:token` pairs (or bare tokens), comma-separated.
CAPTURE_TOKENS = f"{PREFIX}CAPTURE_TOKENS"
SECRET_VARIABLES = (SCORER_API_KEY, TEACHER_API_KEY, CAPTURE_TOKENS)


def _setting(default: Any = None, *, help: str, kind: type = str) -> Any:
    # The variable is the field name upper-cased after the prefix: one spelling, checked by a test.
    extra = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"help": help, "kind": kind}, **extra)


@dataclass(frozen=True)
class DeploymentSettings:
    """Where the data and models live, and which models and launchers a deployment uses. Everything
    else is resource or run config, editable in the Dagster UI's launchpad."""

    dumps: str | None = _setting(
        help="Folder or fsspec URL of the feedback dumps (s3://bucket/feedback/); default ./feedback_dumps"
    )
    storage: str | None = _setting(help="Folder or URL the asset files go under; default $DAGSTER_HOME/warehouse")
    models: str | None = _setting(
        help="Local folder of checkpoints, reports and promotions; default $DAGSTER_HOME/models"
    )
    start_date: str = _setting("2025-01-06", help="The first feedback week (a Monday); partitions start there")
    max_window_weeks: int = _setting(
        4, kind=int, help="The most weeks a training window can reach back (fixed when the code location loads)"
    )
    scorer_backend: str = _setting("none", help="DEITA scorers: none, transformers or openai")
    scorer_complexity_model: str | None = _setting(help="DEITA complexity scorer: hub name, local path or served name")
    scorer_quality_model: str | None = _setting(help="DEITA quality scorer: hub name, local path or served name")
    scorer_base_url: str | None = _setting(help="OpenAI-compatible server (vLLM) for the openai scorer backend")
    teacher_kind: str = _setting("none", help="The synthetic top-up's teacher LLM: none, transformers or openai")
    teacher_model: str | None = _setting(help="Teacher: hub name or local path, or the served model name")
    teacher_base_url: str | None = _setting(help="Teacher: OpenAI-compatible endpoint for kind openai")
    teacher_temperature: float = _setting(0.0, kind=float, help="Teacher sampling temperature (0: greedy)")
    base_model: str = _setting(DEFAULT_BASE_MODEL, help="The model every checkpoint chain starts from (name or path)")
    trainer_device: str | None = _setting(
        help="cuda or cpu for training and evaluation; default: the GPU when there is one"
    )
    trainer_launcher: str = _setting(
        "python", help="python (one process), accelerate (accelerate launch) or ray (accelerate launch on Ray nodes)"
    )
    trainer_processes: int = _setting(1, kind=int, help="accelerate launcher: processes (GPUs); ray: per machine")
    trainer_machines: int = _setting(2, kind=int, help="ray launcher: nodes to train on, one accelerate launch each")
    trainer_cpus_per_machine: float = _setting(1.0, kind=float, help="ray launcher: CPUs each machine reserves")
    trainer_gpus_per_machine: float = _setting(0.0, kind=float, help="ray launcher: GPUs each machine reserves")
    trainer_ray_python: str = _setting(
        "python", help="ray launcher: the Python on the Ray nodes that has this project installed"
    )
    ray_address: str | None = _setting(
        help="The Ray cluster curation runs its heavy stages on (redaction, the leak check, MinHash signatures, "
        "embedding, DEITA scoring): host:port of its GCS (head:6380), ray://head:10001, auto, or local (an in-process Ray); unset: no Ray"
    )
    ray_jobs_address: str | None = _setting(
        help="The Ray cluster's job server, http://<head>:8265: the ray trainer launcher and the ray executor submit jobs there"
    )
    executor: str = _setting(
        "default",
        help="Where a run's steps execute: default (Dagster's multiprocess executor, beside the run) or ray "
        "(dagster-ray's ray_executor: each step a Ray job at ray_jobs_address)",
    )
    trainer_recipe: dict = _setting(dict, kind=dict, help="JSON object of training recipe overrides (KTORecipe fields)")
    trainer_threads: int | None = _setting(
        help="CPU threads of the training process; default: torch's choice", kind=int
    )
    capture: dict = _setting(
        dict, kind=dict, help="JSON object of capture service overrides (CaptureConfig fields: limits, segments)"
    )

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of the field `name`."""
        return PREFIX + name.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeploymentSettings:
        """The settings a deployment's environment gives; unset or empty variables keep their default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(cls.variable(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(cls.variable(f.name), raw, f.metadata["kind"])
        return cls(**values)

    def storage_root(self, environ: Mapping[str, str] | None = None) -> str:
        return self.storage or dagster_home_folder("warehouse", environ)

    def models_root(self, environ: Mapping[str, str] | None = None) -> str:
        return self.models or dagster_home_folder("models", environ)

    def dumps_location(self) -> str:
        return self.dumps or os.path.abspath("feedback_dumps")


def _parse(variable: str, raw: str, kind: type) -> Any:
    try:
        if kind is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
        return kind(raw)
    except ValueError as err:
        raise ValueError(f"{variable}={raw!r} is not a valid {kind.__name__}: {err}") from None


def dagster_home_folder(name: str, environ: Mapping[str, str] | None = None) -> str:
    """`name` under DAGSTER_HOME (./.dagster_home when unset), absolute."""
    environ = os.environ if environ is None else environ
    home = environ.get(DAGSTER_HOME) or ".dagster_home"
    return os.path.join(os.path.abspath(home), name)


def settings_env(**values: Any) -> dict[str, str]:
    """Environment variables for a process that should run with these settings (by field name).

    Example: `settings_env(base_model="/models/tiny", trainer_threads=1)` →
    `{"KTO_PIPELINE_BASE_MODEL": "/models/tiny", "KTO_PIPELINE_TRAINER_THREADS": "1"}`.
    """
    known = {f.name: f for f in fields(DeploymentSettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown deployment settings: {', '.join(unknown)}")
    return {
        DeploymentSettings.variable(name): json.dumps(value) if isinstance(value, dict) else str(value)
        for name, value in values.items()
    }


def shell_assignments(env: Mapping[str, str]) -> str:
    """`NAME=value ...` for a command line a user copies."""
    return " ".join(f"{name}={value}" for name, value in env.items())


def instance_home(explicit: str | os.PathLike | None, project: Path) -> Path:
    """The Dagster instance folder a `kto-pipeline` command uses: the one given, else DAGSTER_HOME,
    else `.dagster_home` in the project folder."""
    return Path(explicit or os.environ.get(DAGSTER_HOME) or project / ".dagster_home").resolve()
