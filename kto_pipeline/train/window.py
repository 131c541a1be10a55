"""Which rows a week's training sees: the window of weeks, the shuffle, the run's recipe overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kto_pipeline.curate.balance import ClassWeights, kto_class_weights


@dataclass(frozen=True)
class TrainingWindow:
    """A week trains on the balanced and synthetic rows of the last `window_weeks` weeks (every
    week's prompts are fresh, so older rows are not stale), shuffled together with `seed`; each
    week also starts from last week's checkpoint."""

    window_weeks: int = field(
        default=1,
        metadata={
            "help": "Train on the balanced and synthetic rows of the last K weeks (at most the deployment's max_window_weeks); each week also starts from last week's checkpoint"
        },
    )
    seed: int = field(default=0, metadata={"help": "Shuffle seed of the combined training rows"})
    class_weights: bool = field(
        default=True,
        metadata={
            "help": "KTO's λD/λU set from the window's class counts so λD·nD/(λU·nU) lies in [1, 4/3] (the KTO "
            "paper's range); off: both 1 whatever the counts"
        },
    )
    recipe: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Recipe overrides for this run (on top of the trainer resource's)"}
    )

    def weeks(self, available: list[str], week: str, max_window_weeks: int) -> list[str]:
        """The weeks to train on, oldest first, among `available` (weeks up to `week` whose rows
        exist); raises ValueError when the window is out of range or the week itself is missing."""
        if not 1 <= self.window_weeks <= max_window_weeks:
            raise ValueError(f"window_weeks must be in 1..{max_window_weeks}, got {self.window_weeks}")
        window = sorted(available)[-self.window_weeks :]
        if week not in window:
            raise ValueError(f"balanced_feedback for {week} is missing: materialize the week's curation first")
        return window

    def weights(self, n_desirable: int, n_undesirable: int) -> ClassWeights:
        """KTO's (λD, λU) for the window's class counts (both 1 with `class_weights` off)."""
        if self.class_weights:
            return kto_class_weights(n_desirable, n_undesirable)
        return ClassWeights(1.0, 1.0, int(n_desirable), int(n_undesirable))
