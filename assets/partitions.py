"""The one weekly partitions definition every asset shares.

The first week is the deployment's `start_date` (KTO_PIPELINE_START_DATE, a Monday): partitions
are part of the code location's definitions, so it is read when the code loads. Weeks start
Monday 00:00 UTC and a week becomes a partition only once it has closed.
"""

from __future__ import annotations

import dagster as dg

from kto_pipeline.config.deployment import DeploymentSettings
from kto_pipeline.core.weeks import WeekCalendar

CALENDAR = WeekCalendar(start_date=DeploymentSettings.from_env().start_date, day_offset=1, timezone="UTC")

feedback_weeks = dg.WeeklyPartitionsDefinition(
    start_date=CALENDAR.start_date,
    day_offset=CALENDAR.day_offset,
    timezone=CALENDAR.timezone,
)
