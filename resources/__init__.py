"""Dagster resources of kto-pipeline: storage, IO manager, the feedback dump source."""

from resources.feedback_source import FeedbackSource
from resources.parquet_io import ParquetIOManager
from resources.pii import PiiRedactor

__all__ = ["FeedbackSource", "ParquetIOManager", "PiiRedactor"]
