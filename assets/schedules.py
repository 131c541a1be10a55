"""The weekly schedule: Monday 02:00 UTC, for the week that closed at midnight."""

from __future__ import annotations

import dagster as dg

from assets.jobs import retrain_job

weekly_retrain_schedule = dg.build_schedule_from_partitioned_job(
    retrain_job,
    name="weekly_retrain_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    description="Runs retrain_job for the feedback week that has just closed.",
)
