"""Langfuse: traces, observations and scores, from the public API or the blob-storage export.

Record kinds, told apart by their fields (camelCase from the public API, snake_case from the
scheduled blob-storage export, whose `input`/`output` are JSON-encoded strings and whose times
read "2024-05-01 12:34:56.789", UTC):

- a trace (GET /api/public/traces/{id}: `scores` inline as objects; the traces list and the
  blob export: scores apart) → a response, keyed by its id;
- an observation: a GENERATION → a response keyed by its id (a SPAN or an EVENT is counted as
  not_a_response);
- a score (GET /api/public/v2/scores, `scores/` files) → a rating of its observation, else of
  its trace: a CORRECTION score is an edit; a score whose name is among the feedback names a
  thumb (BOOLEAN 1/0, NUMERIC by the thumb rule, CATEGORICAL by its string value); any other
  score (an evaluator's, say) is counted as not_user_feedback.
"""

from __future__ import annotations

from typing import Any

from kto_pipeline.ingest.adapters.text import completion_value, first, json_value, prompt_value
from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import Adapted, Rating, Response, Skipped, SkipReason, target_key

TRACE, OBSERVATION = "langfuse:trace", "langfuse:observation"
_TRACE_ONLY_KEYS = ("scores", "observations", "sessionId", "session_id", "htmlPath", "project_id", "projectId")


def _get(record: dict, camel: str, snake: str) -> Any:
    return record.get(camel) if record.get(camel) is not None else record.get(snake)


def is_score(record: dict) -> bool:
    return (
        "name" in record
        and any(k in record for k in ("traceId", "trace_id", "observationId", "observation_id"))
        and any(k in record for k in ("dataType", "data_type", "value", "stringValue", "string_value"))
        and not any(k in record for k in ("input", "output"))
    )


def is_observation(record: dict) -> bool:
    return (
        "type" in record
        and any(k in record for k in ("traceId", "trace_id"))
        and any(k in record for k in ("startTime", "start_time"))
    )


def is_trace(record: dict) -> bool:
    return ("input" in record or "output" in record) and (
        any(k in record for k in _TRACE_ONLY_KEYS) or "traceId" in record or "userId" in record
    )


def _score(score: dict, options: IngestOptions, inline_trace: str | None = None) -> Adapted:
    """A score as a rating, or why it is not one."""
    when = score.get("timestamp")
    data_type = _get(score, "dataType", "data_type")
    string_value = _get(score, "stringValue", "string_value")
    name = score.get("name")
    observation, trace = _get(score, "observationId", "observation_id"), _get(score, "traceId", "trace_id")
    trace = trace if trace is not None else inline_trace
    targets = tuple(
        target_key(kind, ident) for kind, ident in ((OBSERVATION, observation), (TRACE, trace)) if ident is not None
    )
    if not targets:
        return Skipped(SkipReason.NOT_A_RESPONSE, f"score {name!r} rates a session or a dataset run", when)
    ident = None if score.get("id") is None else str(score["id"])
    if data_type == "CORRECTION":
        text = first(score, "stringValue", "string_value", "longStringValue", "value")
        if not isinstance(text, str):
            raise ContractError(Reason.BAD_EDIT, f"CORRECTION score {ident} has no corrected text")
        return Rating(targets, when, None, text, ident)
    if not options.thumb_rule.is_thumb(name):
        return Skipped(
            SkipReason.NOT_USER_FEEDBACK,
            f"score {name!r} is not one of the feedback names {options.feedback_names}",
            when,
        )
    value = string_value if data_type == "CATEGORICAL" else score.get("value")
    if value is None:
        value = string_value
    if value is None:
        raise ContractError(Reason.MISSING_LABEL, f"score {name!r} has no value")
    label = options.thumb_rule.label(value, data_type)
    if label is None:
        return Skipped(SkipReason.NEUTRAL_SCORE, f"score {name!r} = {value!r} is between the thumb bounds", when)
    return Rating(targets, when, label, None, ident)


def _texts(record: dict, strict: bool) -> tuple[Any, Any]:
    given = json_value(record.get("input"), "input", Reason.BAD_PROMPT, strict)
    output = json_value(record.get("output"), "output", Reason.BAD_COMPLETION, strict)
    if given is None:
        raise ContractError(Reason.MISSING_PROMPT, "input is missing")
    if output is None:
        raise ContractError(Reason.MISSING_COMPLETION, "output is missing")
    return prompt_value(given), completion_value(output)


def _response(record: dict, keys: tuple[str, ...], timestamp: Any, model_version: Any) -> Response:
    snake = any(k in record for k in ("trace_id", "session_id", "project_id", "start_time", "user_id"))

    def build() -> CanonicalRecord:
        prompt, completion = _texts(record, strict=snake)
        return CanonicalRecord(
            timestamp=timestamp,
            prompt=prompt,
            completion=completion,
            id=record.get("id"),
            conversation_id=_get(record, "sessionId", "session_id"),
            user_id=_get(record, "userId", "user_id"),
            model_version=model_version,
            metadata=record.get("metadata"),
        )

    return Response.built(keys, build, timestamp, record.get("id"))


def from_langfuse(record: dict, options: IngestOptions) -> Adapted:
    if is_score(record):
        return _score(record, options)
    ident = record.get("id")
    if is_observation(record):
        when = _get(record, "startTime", "start_time")
        if str(record.get("type", "")).upper() != "GENERATION":
            return Skipped(SkipReason.NOT_A_RESPONSE, f"a {record.get('type')} observation, not a GENERATION", when)
        if ident is None:
            raise ContractError(Reason.BAD_FIELD, "observation without an id")
        model = first(record, "version", "model", "providedModelName", "provided_model_name")
        return _response(record, (target_key(OBSERVATION, ident),), when, model)
    keys = () if ident is None else (target_key(TRACE, ident),)
    response = _response(record, keys, record.get("timestamp"), first(record, "release", "version"))
    scores = record.get("scores")
    if scores is not None and not isinstance(scores, list):
        raise ContractError(Reason.BAD_LABEL, "scores must be a list")
    for score in scores or []:
        if isinstance(score, dict):  # the traces list gives score ids, exported with the scores
            rated = _score(score, options, inline_trace=str(ident) if ident is not None else "")
            if isinstance(rated, Rating):
                response.ratings.append(rated)
    return response
