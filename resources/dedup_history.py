"""What earlier weeks kept (hashes, MinHash signatures, embeddings), one Parquet file per week."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field
from upath import UPath

from kto_pipeline.curate.dedup import DedupHistory


class DedupHistoryStore(dg.ConfigurableResource):
    """`<base_path>/<week>.parquet` per week; a week is compared with the `history_weeks` before it.

    Only earlier weeks are read, so re-running a week gives the same result, and a week never
    loses rows to a later one.
    """

    base_path: str = Field(description="Folder or URL of the per-week history files")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options; credentials come from the environment"
    )
    history_weeks: int = Field(default=26, description="How many earlier weeks a week is deduplicated against")

    def _path(self, week: str) -> UPath:
        return UPath(self.base_path, **self.storage_options) / f"{week}.parquet"

    def earlier_weeks(self, week: str) -> list[str]:
        start = pd.Timestamp(week)
        candidates = [(start - pd.Timedelta(weeks=k)).date().isoformat() for k in range(self.history_weeks, 0, -1)]
        return [w for w in candidates if self._path(w).exists()]

    def load(self, week: str) -> tuple[DedupHistory | None, list[str]]:
        weeks = self.earlier_weeks(week)
        parts = []
        for w in weeks:
            with self._path(w).open("rb") as fh:
                parts.append(DedupHistory.from_frame(pd.read_parquet(fh)))
        return (DedupHistory.concat(parts) if parts else None), weeks

    def load_week(self, week: str) -> DedupHistory | None:
        """What `week` itself kept (its rows' vectors feed DEITA's diversity pass), or None."""
        path = self._path(week)
        if not path.exists():
            return None
        with path.open("rb") as fh:
            return DedupHistory.from_frame(pd.read_parquet(fh))

    def save(self, week: str, history: DedupHistory) -> str:
        path = self._path(week)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            history.to_frame().to_parquet(fh, index=False)
        return str(path)
