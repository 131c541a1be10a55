"""The composition root: the one place the code location's Definitions are built.

Deployment settings (where dumps, tables and models live; which scorer, teacher and base model;
how training is launched) come from `KTO_PIPELINE_*` environment variables, each declared once
with its default and help in kto_pipeline/config/deployment.py. Everything else is resource or
run config, editable in the Dagster UI's launchpad.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.balance import balanced_feedback
from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.jobs import curate_job, retrain_job
from assets.redact import redacted_feedback
from assets.schedules import weekly_retrain_schedule
from assets.score import scored_feedback
from assets.sensors import feedback_dump_sensor
from assets.synthetic import synthetic_topup
from assets.training import eval_report, kto_checkpoint
from kto_pipeline.config.deployment import SCORER_API_KEY, TEACHER_API_KEY, DeploymentSettings
from resources import (
    DedupHistoryStore,
    DeitaScorerResource,
    Embedder,
    FeedbackSource,
    JudgeLLM,
    KTOTrainerResource,
    ParquetIOManager,
    PiiRedactor,
    RayCluster,
    TeacherLLM,
)
from resources.ray_executor import executor_from_env

SETTINGS = DeploymentSettings.from_env()
STORAGE = SETTINGS.storage_root()
MODELS = SETTINGS.models_root()


def _secret(name: str) -> dg.EnvVar | None:
    # Only named when set: Dagster resolves an EnvVar at run time and fails on a missing one.
    return dg.EnvVar(name) if os.environ.get(name) else None


def deita_scorer_from_env(settings: DeploymentSettings | None = None) -> DeitaScorerResource:
    s = settings or DeploymentSettings.from_env()
    return DeitaScorerResource(
        backend=s.scorer_backend,
        complexity_model=s.scorer_complexity_model,
        quality_model=s.scorer_quality_model,
        base_url=s.scorer_base_url,
        api_key=_secret(SCORER_API_KEY),
    )


def teacher_from_env(settings: DeploymentSettings | None = None) -> TeacherLLM:
    s = settings or DeploymentSettings.from_env()
    return TeacherLLM(
        kind=s.teacher_kind,
        model=s.teacher_model,
        base_url=s.teacher_base_url,
        api_key=_secret(TEACHER_API_KEY),
        temperature=s.teacher_temperature,
    )


def trainer_from_env(settings: DeploymentSettings | None = None) -> KTOTrainerResource:
    s = settings or DeploymentSettings.from_env()
    return KTOTrainerResource(
        base_model=s.base_model,
        models_root=s.models_root(),
        device=s.trainer_device,
        launcher=s.trainer_launcher,
        num_processes=s.trainer_processes,
        ray_address=s.ray_jobs_address,
        machines=s.trainer_machines,
        cpus_per_machine=s.trainer_cpus_per_machine,
        gpus_per_machine=s.trainer_gpus_per_machine,
        ray_python=s.trainer_ray_python,
        recipe=s.trainer_recipe,
        threads=s.trainer_threads or None,
    )


defs = dg.Definitions(
    assets=[
        raw_feedback,
        redacted_feedback,
        deduplicated_feedback,
        scored_feedback,
        balanced_feedback,
        synthetic_topup,
        kto_checkpoint,
        eval_report,
    ],
    jobs=[curate_job, retrain_job],
    schedules=[weekly_retrain_schedule],
    sensors=[feedback_dump_sensor],
    resources={
        "io_manager": ParquetIOManager(base_path=STORAGE),
        "feedback_source": FeedbackSource(location=SETTINGS.dumps_location()),
        "pii": PiiRedactor(),
        "embedder": Embedder(),
        "ray_cluster": RayCluster(address=SETTINGS.ray_address),
        "dedup_history": DedupHistoryStore(base_path=f"{STORAGE.rstrip('/')}/dedup_history"),
        "deita_scorer": deita_scorer_from_env(SETTINGS),
        "teacher_llm": teacher_from_env(SETTINGS),
        "trainer": trainer_from_env(SETTINGS),
        # No judge by default: a deployment names one in the launchpad's resource config (the
        # simulator points it at its oracle endpoint); the judge-free answer signals always run.
        "judge": JudgeLLM(),
    },
    # None (Dagster's multiprocess executor) unless KTO_PIPELINE_EXECUTOR=ray: resources/ray_executor.py.
    executor=executor_from_env(SETTINGS),
)
