"""Feedback weeks: which week a timestamp belongs to, in the same terms as Dagster's weekly
partitions (a week is named by the date it starts on; `day_offset` 0 = Sunday, 1 = Monday)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd


@dataclass(frozen=True)
class WeekCalendar:
    start_date: str = "2025-01-06"
    day_offset: int = 1
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not 0 <= self.day_offset <= 6:
            raise ValueError(f"day_offset must be 0..6 (0 = Sunday), got {self.day_offset}")
        first = date.fromisoformat(self.start_date)
        if self._weekday_offset(first) != 0:
            raise ValueError(f"start_date {self.start_date} is not a week start for day_offset={self.day_offset}")

    def _weekday_offset(self, day: date) -> int:
        # Python: Monday=0..Sunday=6; Dagster's day_offset: Sunday=0..Saturday=6.
        return (day.weekday() - (self.day_offset - 1)) % 7

    def week_of(self, ts: pd.Timestamp | datetime) -> str:
        """The key (start date, YYYY-MM-DD) of the week containing `ts`."""
        local = pd.Timestamp(ts).tz_convert(ZoneInfo(self.timezone)).date()
        return (local - timedelta(days=self._weekday_offset(local))).isoformat()

    @property
    def first_week(self) -> str:
        return self.start_date

    def window(self, week: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """[start, end) of a week, in UTC."""
        start = pd.Timestamp(week, tz=ZoneInfo(self.timezone))
        if self.week_of(start) != week:
            raise ValueError(f"{week} is not a week start for this calendar")
        end = (start.tz_localize(None) + pd.Timedelta(days=7)).tz_localize(ZoneInfo(self.timezone))
        return start.tz_convert("UTC"), end.tz_convert("UTC")
