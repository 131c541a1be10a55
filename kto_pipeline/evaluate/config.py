"""The evaluation settings a pipeline run chooses: the promotion gate's metric and tolerance, and the batch size."""

from __future__ import annotations

from dataclasses import dataclass, field

from kto_pipeline.evaluate.constants import DEFAULT_BATCH_SIZE
from kto_pipeline.evaluate.promotion import DEFAULT_METRIC, DEFAULT_TOLERANCE, PromotionPolicy


@dataclass(frozen=True)
class EvalConfig:
    """Settings of the weekly held-out evaluation and its promotion gate (the Dagster layer's defaults)."""

    metric: str = field(default=DEFAULT_METRIC, metadata={"help": "The metric the promotion gate watches"})
    tolerance: float = field(
        default=DEFAULT_TOLERANCE, metadata={"help": "Largest drop against the champion that still promotes"}
    )
    batch_size: int = field(
        default=DEFAULT_BATCH_SIZE,
        metadata={"help": "Held-out rows per forward pass (and per KL block, as in training)"},
    )

    def policy(self) -> PromotionPolicy:
        """The promotion policy that watches `metric` with `tolerance`."""
        return PromotionPolicy(metric=self.metric, tolerance=self.tolerance)
