"""The composition root: the one place the code location's Definitions are built.

Deployment settings come from the environment, with defaults that run the bundled demo:
  KTO_PIPELINE_DUMPS     folder or fsspec URL of the feedback dumps (default ./feedback_dumps)
  KTO_PIPELINE_STORAGE   folder or URL the asset files go under (default $DAGSTER_HOME/warehouse,
                         or ./.dagster_home/warehouse)
  KTO_PIPELINE_START_DATE  the first feedback week (see assets/partitions.py)
  KTO_PIPELINE_SCORER_BACKEND   none (default), transformers or openai: the DEITA scorers
  KTO_PIPELINE_SCORER_COMPLEXITY_MODEL / KTO_PIPELINE_SCORER_QUALITY_MODEL  their names or paths
  KTO_PIPELINE_SCORER_BASE_URL  an OpenAI-compatible server (vLLM) for the openai backend
  KTO_PIPELINE_SCORER_API_KEY   its key (read through EnvVar at run time, never stored)
  KTO_PIPELINE_TEACHER_KIND     none (default), transformers or openai: the synthetic top-up's LLM
  KTO_PIPELINE_TEACHER_MODEL / KTO_PIPELINE_TEACHER_BASE_URL / KTO_PIPELINE_TEACHER_API_KEY /
  KTO_PIPELINE_TEACHER_TEMPERATURE (0: greedy)
  KTO_PIPELINE_BASE_MODEL       the model the checkpoint chain starts from (name or path)
  KTO_PIPELINE_MODELS           local folder of checkpoints, reports and promotions
                                (default $DAGSTER_HOME/models, or ./.dagster_home/models)
  KTO_PIPELINE_TRAINER_DEVICE / KTO_PIPELINE_TRAINER_LAUNCHER (python | accelerate) /
  KTO_PIPELINE_TRAINER_PROCESSES / KTO_PIPELINE_TRAINER_RECIPE (JSON recipe overrides) /
  KTO_PIPELINE_TRAINER_THREADS (CPU threads of the training process)
Everything else is resource config, editable in the Dagster UI's launchpad.
"""

from __future__ import annotations

import json
import os

import dagster as dg

from assets.balance import balanced_feedback
from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.redact import redacted_feedback
from assets.score import scored_feedback
from assets.synthetic import synthetic_topup
from assets.training import eval_report, kto_checkpoint
from assets.jobs import curate_job, retrain_job
from assets.schedules import weekly_retrain_schedule
from assets.sensors import feedback_dump_sensor
from resources import (
    DedupHistoryStore,
    DeitaScorerResource,
    Embedder,
    FeedbackSource,
    KTOTrainerResource,
    ParquetIOManager,
    PiiRedactor,
    TeacherLLM,
)


def _home_folder(name: str) -> str:
    home = os.environ.get("DAGSTER_HOME") or ".dagster_home"
    return os.path.join(os.path.abspath(home), name)


STORAGE = os.environ.get("KTO_PIPELINE_STORAGE") or _home_folder("warehouse")
MODELS = os.environ.get("KTO_PIPELINE_MODELS") or _home_folder("models")
# A production default a user would pass; on a machine without hub access set a local path.
DEFAULT_BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def _secret(name: str) -> dg.EnvVar | None:
    # Only named when set: Dagster resolves an EnvVar at run time and fails on a missing one.
    return dg.EnvVar(name) if os.environ.get(name) else None


def deita_scorer_from_env() -> DeitaScorerResource:
    env = os.environ.get
    return DeitaScorerResource(
        backend=env("KTO_PIPELINE_SCORER_BACKEND") or "none",
        complexity_model=env("KTO_PIPELINE_SCORER_COMPLEXITY_MODEL"),
        quality_model=env("KTO_PIPELINE_SCORER_QUALITY_MODEL"),
        base_url=env("KTO_PIPELINE_SCORER_BASE_URL"),
        api_key=_secret("KTO_PIPELINE_SCORER_API_KEY"),
    )


def teacher_from_env() -> TeacherLLM:
    env = os.environ.get
    return TeacherLLM(
        kind=env("KTO_PIPELINE_TEACHER_KIND") or "none",
        model=env("KTO_PIPELINE_TEACHER_MODEL"),
        base_url=env("KTO_PIPELINE_TEACHER_BASE_URL"),
        api_key=_secret("KTO_PIPELINE_TEACHER_API_KEY"),
        temperature=float(env("KTO_PIPELINE_TEACHER_TEMPERATURE") or 0.0),
    )


def trainer_from_env() -> KTOTrainerResource:
    env = os.environ.get
    return KTOTrainerResource(
        base_model=env("KTO_PIPELINE_BASE_MODEL") or DEFAULT_BASE_MODEL,
        models_root=MODELS,
        device=env("KTO_PIPELINE_TRAINER_DEVICE"),
        launcher=env("KTO_PIPELINE_TRAINER_LAUNCHER") or "python",
        num_processes=int(env("KTO_PIPELINE_TRAINER_PROCESSES") or 1),
        recipe=json.loads(env("KTO_PIPELINE_TRAINER_RECIPE") or "{}"),
        threads=int(env("KTO_PIPELINE_TRAINER_THREADS") or 0) or None,
    )


defs = dg.Definitions(
    assets=[
        raw_feedback, redacted_feedback, deduplicated_feedback, scored_feedback, balanced_feedback, synthetic_topup,
        kto_checkpoint, eval_report,
    ],
    jobs=[curate_job, retrain_job],
    schedules=[weekly_retrain_schedule],
    sensors=[feedback_dump_sensor],
    resources={
        "io_manager": ParquetIOManager(base_path=STORAGE),
        "feedback_source": FeedbackSource(location=os.environ.get("KTO_PIPELINE_DUMPS") or os.path.abspath("feedback_dumps")),
        "pii": PiiRedactor(),
        "embedder": Embedder(),
        "dedup_history": DedupHistoryStore(base_path=f"{STORAGE.rstrip('/')}/dedup_history"),
        "deita_scorer": deita_scorer_from_env(),
        "teacher_llm": teacher_from_env(),
        "trainer": trainer_from_env(),
    },
)
