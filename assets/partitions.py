"""The one weekly partitions definition every asset shares.

The first week comes from KTO_PIPELINE_START_DATE (a Monday, default 2025-01-06): partitions
are part of the code location's definitions, so it is read when the code loads. Weeks start
Monday 00:00 UTC and a week becomes a partition only once it has closed.
"""

from __future__ import annotations

import os

import dagster as dg

from kto_pipeline.core.weeks import WeekCalendar

CALENDAR = WeekCalendar(start_date=os.environ.get("KTO_PIPELINE_START_DATE", "2025-01-06"), day_offset=1, timezone="UTC")

feedback_weeks = dg.WeeklyPartitionsDefinition(
    start_date=CALENDAR.start_date,
    day_offset=CALENDAR.day_offset,
    timezone=CALENDAR.timezone,
)
