"""Where feedback dumps land and how they are read: a thin resource over kto_pipeline.ingest.load."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from kto_pipeline.ingest.adapters import ADAPTER_FORMATS
from kto_pipeline.ingest.dumps import DumpFile, list_dumps
from kto_pipeline.ingest.load import IngestOptions, IngestResult, ingest, weeks_touched
from kto_pipeline.core.weeks import WeekCalendar


class FeedbackSource(dg.ConfigurableResource):
    """A folder or fsspec URL of JSONL / JSON / CSV / Parquet dumps (optionally .gz)."""

    location: str = Field(description="Local folder or fsspec URL (s3://bucket/prefix) of the dumps")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options (endpoint, region); credentials come from the environment",
    )
    format: str = Field(default="auto", description=f"Adapter: one of {', '.join(ADAPTER_FORMATS)}")
    min_edit_distance: float = Field(
        default=0.02,
        description="Edits closer than this normalised edit distance to the original are ignored",
    )
    max_text_chars: int = Field(default=100_000, description="Longer prompts or responses are quarantined")

    def ingest_options(self, calendar: WeekCalendar) -> IngestOptions:
        if self.format not in ADAPTER_FORMATS:
            raise ValueError(f"feedback_source.format {self.format!r} is not one of {ADAPTER_FORMATS}")
        return IngestOptions(self.format, self.min_edit_distance, self.max_text_chars, calendar)

    def list_dumps(self) -> list[DumpFile]:
        return list_dumps(self.location, self.storage_options)

    def load(self, calendar: WeekCalendar, dumps: list[DumpFile] | None = None) -> IngestResult:
        """Every record of the dumps (default: all at the location), assigned to weeks."""
        return ingest(self.list_dumps() if dumps is None else dumps, self.ingest_options(calendar), self.storage_options)

    def weeks_touched(self, dump: DumpFile, calendar: WeekCalendar) -> set[str]:
        return weeks_touched(dump, self.ingest_options(calendar), self.storage_options)
