"""The held-out evaluation's own settings (the promotion gate's are `PromotionPolicy`, the answers' `AnswerConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kto_pipeline.evaluate.constants import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class EvalConfig:
    """Settings of the weekly implicit-reward evaluation (the Dagster layer's defaults)."""

    batch_size: int = field(
        default=DEFAULT_BATCH_SIZE,
        metadata={"help": "Held-out rows per forward pass (and per KL block, as in training)"},
    )
