"""Which exported scores are the users' thumbs, and how a score's value becomes up or down.

Tools store a thumb as a score (Langfuse), feedback (LangSmith) or a metric (TensorZero) with
a name the team chose, and with a data type: BOOLEAN (1/0, "True"), NUMERIC (1/0/-1, or a
rating such as 1-5 stars), CATEGORICAL ("thumbs_up", or the team's own categories).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kto_pipeline.ingest.contract import ContractError, Reason, normalise_label

FEEDBACK_SCORE_NAMES = (
    "user-feedback",
    "user_feedback",
    "feedback",
    "thumbs",
    "thumbs_up",
    "thumb",
    "user_score",
    "user-score",
    "label",
    "helpful",
)


@dataclass(frozen=True)
class ThumbRule:
    """Score names that carry the users' thumbs, and how their values read.

    Without bounds a number reads as a thumb (1 up; 0 or -1 down; anything else is a bad
    label); with `up_min`/`down_max` it is a rating: at least `up_min` is up, at most
    `down_max` down, and a value between them is neutral (counted, not trained on).
    """

    names: tuple[str, ...] = FEEDBACK_SCORE_NAMES
    up_min: float | None = None
    down_max: float | None = None
    categories: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.up_min is None) != (self.down_max is None):
            raise ValueError("thumb_up_min and thumb_down_max are set together (a rating scale has both ends)")
        if self.up_min is not None and self.down_max is not None and self.down_max >= self.up_min:
            raise ValueError(f"thumb_down_max ({self.down_max}) must be below thumb_up_min ({self.up_min})")

    def is_thumb(self, name: Any) -> bool:
        return isinstance(name, str) and name.strip().lower() in {n.lower() for n in self.names}

    def label(self, value: Any, data_type: str | None = None) -> bool | None:
        """True (up), False (down), None (neutral); ContractError(BAD_LABEL) if unreadable."""
        if isinstance(value, str):
            key = value.strip().lower()
            for category, up in self.categories.items():
                if category.strip().lower() == key:
                    return up
            try:
                value = float(key)
            except ValueError:
                return normalise_label(value)
        if data_type == "BOOLEAN" or isinstance(value, bool) or self.up_min is None or self.down_max is None:
            return normalise_label(value)
        if not isinstance(value, (int, float)) or math.isnan(value):
            raise ContractError(Reason.BAD_LABEL, f"score value {value!r} is not a number")
        if value >= self.up_min:
            return True
        if value <= self.down_max:
            return False
        return None
