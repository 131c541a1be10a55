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
Everything else is resource config, editable in the Dagster UI's launchpad.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.balance import balanced_feedback
from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.redact import redacted_feedback
from assets.score import scored_feedback
from assets.jobs import curate_job, retrain_job
from assets.schedules import weekly_retrain_schedule
from assets.sensors import feedback_dump_sensor
from resources import DedupHistoryStore, DeitaScorerResource, Embedder, FeedbackSource, ParquetIOManager, PiiRedactor


def _default_storage() -> str:
    home = os.environ.get("DAGSTER_HOME") or ".dagster_home"
    return os.path.join(os.path.abspath(home), "warehouse")


STORAGE = os.environ.get("KTO_PIPELINE_STORAGE") or _default_storage()


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


defs = dg.Definitions(
    assets=[raw_feedback, redacted_feedback, deduplicated_feedback, scored_feedback, balanced_feedback],
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
    },
)
