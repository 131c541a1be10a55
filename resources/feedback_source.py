"""Where feedback dumps land and how they are read: a thin resource over kto_pipeline.ingest.load."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.dumps import DumpFile, list_dumps
from kto_pipeline.ingest.load import IngestResult, ingest
from kto_pipeline.ingest.options import ADAPTER_FORMATS, IngestOptions
from resources.library_config import config_from


class FeedbackSource(
    config_from(
        IngestOptions,
        base=dg.ConfigurableResource,
        fields=[
            "format",
            "min_edit_distance",
            "edits_as_rows",
            "max_text_chars",
            "feedback_names",
            "thumb_up_min",
            "thumb_down_max",
            "thumb_categories",
            "demonstrations",
            "feedback_lookback_days",
        ],
        name="FeedbackSourceConfig",
    )
):
    """A folder or fsspec URL of JSONL / JSON / CSV / Parquet dumps (optionally .gz)."""

    location: str = Field(description="Local folder or fsspec URL (s3://bucket/prefix) of the dumps")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options (endpoint, region); credentials come from the environment",
    )

    def ingest_options(self, calendar: WeekCalendar) -> IngestOptions:
        if self.format not in ADAPTER_FORMATS:
            raise ValueError(f"feedback_source.format {self.format!r} is not one of {ADAPTER_FORMATS}")
        return self.to_library(calendar=calendar)

    def list_dumps(self) -> list[DumpFile]:
        return list_dumps(self.location, self.storage_options)

    def load(self, calendar: WeekCalendar, dumps: list[DumpFile] | None = None) -> IngestResult:
        """Every record of the dumps (default: all at the location), assigned to weeks."""
        return ingest(
            self.list_dumps() if dumps is None else dumps, self.ingest_options(calendar), self.storage_options
        )

    def weeks_by_dump(
        self, calendar: WeekCalendar, dumps: list[DumpFile]
    ) -> tuple[dict[str, set[str]], dict[str, str]]:
        """(dump → the weeks its records land in, joined with every other dump; unreadable
        dump → why). A thumb in a new dump lands in its own week even when the response it
        rates sits in an older dump, and a late response lands in its ratings' week."""
        unreadable: dict[str, str] = {}
        result = ingest(dumps, self.ingest_options(calendar), self.storage_options, unreadable=unreadable)
        return result.weeks_by_dump(), unreadable
