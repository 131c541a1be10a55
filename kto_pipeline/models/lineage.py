"""Which checkpoint a week's training starts from.

Last week's checkpoint, unless its training collapsed: then the champion before this week,
else the base model. A collapsed model is never built on (nor promoted), so one bad week does
not poison the chain; the week after it starts from the last model that passed the gate.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from kto_pipeline.models.manifest import collapse_of, read_manifest
from kto_pipeline.models.registry import ModelRegistry


class StartingPoint(NamedTuple):
    checkpoint: str | None  # None: the base model
    note: str  # why, for logs and metadata


def previous_week(week: str) -> str:
    return (pd.Timestamp(week) - pd.Timedelta(weeks=1)).date().isoformat()


def init_checkpoint(registry: ModelRegistry, week: str) -> StartingPoint:
    """The checkpoint `week` starts from, and why (see the module docstring)."""
    prev = registry.checkpoint(previous_week(week))
    if prev is not None:
        if collapse_of(read_manifest(prev)) is None:
            return StartingPoint(str(prev), f"last week's checkpoint ({previous_week(week)})")
    champion = registry.champion_before(week)
    if champion is not None:
        return StartingPoint(
            champion.checkpoint,
            f"the champion ({champion.week}); last week's training "
            + ("collapsed" if prev is not None else "does not exist"),
        )
    return StartingPoint(None, "the base model (no earlier checkpoint)")
