"""`StageDrops`: what every dedup stage returns, the rows it drops, why, and what they duplicate.

Stages never write into shared state: each gets a mask of the rows still in (what the earlier
stages left) and returns its drops; the driver applies them in stage order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StageDrops:
    """rows: positions (in the week's rows) of the dropped rows, ascending.
    reasons: the `DedupReason` of each. duplicate_of: the row_id of the kept row or earlier
    week's row each duplicates (None for contradictions). info: what the stage reports for run
    metadata.
    """

    rows: np.ndarray
    reasons: np.ndarray
    duplicate_of: np.ndarray
    info: dict = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, reason: np.ndarray, duplicate_of: np.ndarray, info: dict | None = None) -> StageDrops:
        """From per-row arrays over the week (None where the stage dropped nothing)."""
        rows = np.flatnonzero(reason != None)  # noqa: E711 - element-wise
        return cls(rows=rows, reasons=reason[rows], duplicate_of=duplicate_of[rows], info=dict(info or {}))

    def __len__(self) -> int:
        return len(self.rows)

    def apply(self, reason: np.ndarray, duplicate_of: np.ndarray) -> None:
        """Write these drops into the driver's per-row arrays; a row can be dropped only once."""
        if len(self.rows) and any(r is not None for r in reason[self.rows]):
            raise ValueError("a stage dropped a row an earlier stage had already dropped")
        reason[self.rows] = self.reasons
        duplicate_of[self.rows] = self.duplicate_of
