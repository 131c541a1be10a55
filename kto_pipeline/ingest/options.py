"""How dumps are read: the adapter, the thumb rule, which edits count, the join's look-back."""

from __future__ import annotations

from dataclasses import dataclass, field

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.thumbs import FEEDBACK_SCORE_NAMES, ThumbRule

ADAPTER_FORMATS = ("auto", "contract", "trl", "openai", "paired", "langfuse", "langsmith", "tensorzero", "capture")


@dataclass(frozen=True)
class IngestOptions:
    """How dump records are read: which adapter, which scores are thumbs, which edits count."""

    format: str = field(
        default="auto",
        metadata={"help": f"Adapter: one of {', '.join(ADAPTER_FORMATS)}; auto recognises each record by its fields"},
    )
    min_edit_distance: float = field(
        default=0.02,
        metadata={"help": "Edits closer than this normalised edit distance to the original are ignored"},
    )
    max_text_chars: int = field(default=100_000, metadata={"help": "Longer prompts or responses are quarantined"})
    feedback_names: tuple[str, ...] = field(
        default=FEEDBACK_SCORE_NAMES,
        metadata={
            "help": "Score names (Langfuse), feedback keys (LangSmith) and metric names (TensorZero) that hold "
            "users' thumbs; other scores are counted as not_user_feedback"
        },
    )
    thumb_up_min: float | None = field(
        default=None,
        metadata={
            "help": "For numeric ratings (e.g. 1-5 stars): a value at least this is a thumbs-up; set with "
            "thumb_down_max. Unset: 1 is up, 0 and -1 are down"
        },
    )
    thumb_down_max: float | None = field(
        default=None,
        metadata={"help": "For numeric ratings: a value at most this is a thumbs-down; values between are neutral"},
    )
    thumb_categories: dict[str, bool] = field(
        default_factory=dict,
        metadata={
            "help": "Categorical score values of your own and whether each is up (true) or down (false), "
            "beside the common spellings (thumbs_up, good, 👍, ...)"
        },
    )
    edits_as_rows: bool = field(
        default=True,
        metadata={
            "help": "A user's edit gives two rows: the edited text desirable, the original undesirable; off: an "
            "edited record counts by its thumb alone (one without a thumb is quarantined as missing_label)"
        },
    )
    demonstrations: bool = field(
        default=True,
        metadata={
            "help": "OpenAI chat fine-tuning rows (messages, no label) become desirable rows with signal "
            "'demonstration'; off: they are counted as unrated"
        },
    )
    feedback_lookback_days: int = field(
        default=28,
        metadata={
            "help": "Feedback is joined to a response at most this many days older than the feedback; "
            "feedback whose response is not found within it is quarantined as orphan_feedback"
        },
    )
    calendar: WeekCalendar = field(
        default_factory=WeekCalendar, metadata={"help": "The feedback weeks records are assigned to"}
    )

    def __post_init__(self) -> None:
        if self.format not in ADAPTER_FORMATS:
            raise ValueError(f"unknown feedback format {self.format!r}; one of {ADAPTER_FORMATS}")
        if self.feedback_lookback_days < 0:
            raise ValueError("feedback_lookback_days must be 0 or more")
        self.thumb_rule  # noqa: B018 - a contradictory rule fails here, not at the first score

    @property
    def thumb_rule(self) -> ThumbRule:
        return ThumbRule(
            tuple(self.feedback_names), self.thumb_up_min, self.thumb_down_max, dict(self.thumb_categories)
        )
