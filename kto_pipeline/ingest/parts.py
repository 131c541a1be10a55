"""What an adapter makes of one exported record: a whole record, or one side of a join.

Chat-export tools keep the text a user rated apart from the rating: a Langfuse trace and its
scores, a LangSmith run and its feedback, a TensorZero inference and its metric feedback. An
adapter turns each exported record into one of:

- `CanonicalRecord`: a record that carries its own text and label (the contract, a TRL row, a
  Langfuse trace with its scores inline);
- `Response`: a shown response that feedback may refer to by id; it may carry ratings inline;
- `Rating`: one piece of feedback (a thumb, an edit, or both) on a response known by id;
- `Skipped`: a record that is valid but says nothing about a response's quality (a score of
  an LLM evaluator, a span that is not a generation), counted with its reason.

`join.py` matches ratings to responses; `load.py` turns the result into rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kto_pipeline.ingest.contract import CanonicalRecord, ContractError


def target_key(namespace: str, ident: Any) -> str:
    """The join key of an id in a tool's id space (`langfuse:3f2a…`): ids of different tools,
    or of different kinds in one tool, never meet by accident."""
    return f"{namespace}:{ident}"


# A record's timestamp when the format has none (fine-tuning files): the time its dump was
# written, which the loader knows and the adapter does not.
DUMP_WRITTEN_AT = "<dump written at>"


@dataclass(frozen=True)
class Rating:
    """A thumb and/or an edit on the response that `targets` name (the first one found wins:
    a Langfuse score names its observation, and its trace for when observations were not
    exported).

    `label` is already a bool (the adapter applied the thumb rule); `edit` is the corrected
    text as exported. `timestamp` is when the rating was given; None: at the response's time.
    """

    targets: tuple[str, ...]
    timestamp: Any = None
    label: bool | None = None
    edit: Any = None
    id: str | None = None


@dataclass
class Response:
    """A response that ratings can refer to by any of `keys` (see `target_key`).

    `record` holds the prompt, the completion, the response's timestamp and ids; its label and
    edit are filled in by the join. `ratings` are those exported with the response itself.
    """

    keys: tuple[str, ...]
    record: CanonicalRecord
    ratings: list[Rating] = field(default_factory=list)
    # Why the record cannot become rows (a run without outputs, an input that is not JSON),
    # raised only if someone rated it: a response nobody rated is not bad input.
    error: ContractError | None = None

    @classmethod
    def built(
        cls, keys: tuple[str, ...], build: Callable[[], CanonicalRecord], timestamp: Any = None, ident: Any = None
    ) -> Response:
        """The response whose record `build()` reads from the export; if it cannot (a
        ContractError), the response keeps its time and id, and the error for the join."""
        try:
            return cls(keys, build())
        except ContractError as exc:
            return cls(keys, CanonicalRecord(timestamp=timestamp, prompt=None, id=ident), error=exc)


@dataclass(frozen=True)
class Skipped:
    """A valid record that is not about a response's quality, and why."""

    reason: str
    detail: str
    timestamp: Any = None


Adapted = CanonicalRecord | Response | Rating | Skipped


class SkipReason:
    """Why a readable record makes no training row without being bad input. Stable strings."""

    UNRATED = "unrated"  # a response nobody rated
    SUPERSEDED = "superseded"  # an older thumb or edit on a response rated again later
    NOT_USER_FEEDBACK = "not_user_feedback"  # a score or metric that is not the users' thumbs
    NEUTRAL_SCORE = "neutral_score"  # a score between the thumb rule's up and down bounds
    NOT_A_RESPONSE = "not_a_response"  # a span, a tool call, an event: nothing a user saw rated
    RESPONSE_QUARANTINED = "response_quarantined"  # a rating of a response that broke the contract
    ZERO_WEIGHT = "zero_weight"  # a fine-tuning example whose last assistant turn has weight 0
