"""What apps send (validated request bodies) and the JSONL records they become on disk.

A response event is one response shown; a feedback event is a thumb and/or an edit on a
response known by its id, sent when the user gives it. Both carry an `event_id`: the client
sets one per event, so a retried request is recorded once. On disk they are records of the
ingest stage's `capture` format (`event: "response"` / `"feedback"`).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_ID = 200  # characters of an id


def _utf8(value: str) -> str:
    # JSON may spell a lone surrogate ("\ud800"); it cannot be written as UTF-8, so it is refused here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode text)") from None
    return value


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # NaN / Infinity, or a lone surrogate
        raise ValueError(f"must be JSON with finite numbers and valid Unicode text ({exc})") from None
    return value


def _iso_text(value: Any) -> Any:
    # Lax parsing would take 0 or 1.7e9 as a datetime; the spec says an RFC 3339 string.
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-11-03T10:00:00Z")
    return value


Text = Annotated[str, AfterValidator(_utf8)]
Ident = Annotated[str, Field(min_length=1, max_length=_ID), AfterValidator(_utf8)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_utf8)]
    content: Text


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: Ident | None = Field(
        default=None, description="Idempotency key: a retried event with the same id is recorded once"
    )
    timestamp: Annotated[datetime | None, BeforeValidator(_iso_text)] = Field(
        default=None, description="When it happened (default: when received); UTC if no zone"
    )

    def stamped(self, received: datetime) -> dict[str, Any]:
        when = self.timestamp or received
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return {
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "received_at": received.isoformat().replace("+00:00", "Z"),
        }


class ResponseEvent(_Event):
    """A response shown to a user."""

    type: Literal["response"] = "response"
    id: Ident = Field(description="The response's id; feedback refers to it")
    prompt: Text | list[Message] = Field(description="The prompt text, or the chat messages before the response")
    completion: Text = Field(description="The response shown")
    model_version: Ident | None = None
    user_id: Ident | None = None
    conversation_id: Ident | None = None
    metadata: Annotated[dict[str, Any] | None, AfterValidator(_metadata)] = None

    def record(self, received: datetime) -> dict[str, Any]:
        prompt = self.prompt if isinstance(self.prompt, str) else [m.model_dump() for m in self.prompt]
        return {
            "event": "response",
            "event_id": self.event_id or f"response:{self.id}",
            "id": self.id,
            **self.stamped(received),
            "prompt": prompt,
            "completion": self.completion,
            "model_version": self.model_version,
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "metadata": self.metadata,
        }


class FeedbackEvent(_Event):
    """A user's thumb and/or edit on a response shown earlier."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["thumb"]}, {"required": ["edited_completion"]}]},
    )

    type: Literal["feedback"] = "feedback"
    response_id: Ident = Field(description="The id the response was recorded with")
    # Not nullable: a feedback event carries a thumb, an edit, or both (the schema's anyOf says so).
    thumb: Literal["up", "down"] = Field(default=None, description="up: desirable, down: undesirable")
    edited_completion: Text = Field(default=None, description="The user's corrected response")
    comment: Annotated[str | None, Field(max_length=10_000), AfterValidator(lambda v: v and _utf8(v))] = None

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackEvent:
        if self.thumb is None and self.edited_completion is None:
            raise ValueError("feedback needs a thumb ('up' or 'down') or an edited_completion")
        return self

    def record(self, received: datetime) -> dict[str, Any]:
        return {
            "event": "feedback",
            "event_id": self.event_id or f"feedback:{uuid.uuid4()}",
            "response_id": self.response_id,
            **self.stamped(received),
            "label": self.thumb,
            "edited_completion": self.edited_completion,
            "comment": self.comment,
        }


# Not a discriminated union: `type` has a default, so a batch item may leave it out, and the
# two shapes cannot be confused (extra fields are refused).
Event = ResponseEvent | FeedbackEvent


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1, description="Responses and feedback, in any mix")


class Accepted(BaseModel):
    accepted: int = Field(description="Events written now")
    duplicates: int = Field(description="Events already recorded (a retry): not written again")


def field_over_limit(record: dict[str, Any], limit: int) -> str | None:
    """The first text field over `limit` characters, or None."""
    for name in ("completion", "edited_completion"):
        if isinstance(record.get(name), str) and len(record[name]) > limit:
            return name
    prompt = record.get("prompt")
    size = len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt or [])
    return "prompt" if size > limit else None
