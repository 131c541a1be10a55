"""TensorZero: inferences and their feedback, as exported from its ClickHouse tables
(`SELECT …, timestamp FROM ChatInference FORMAT JSONEachRow`) or sent to POST /feedback.

- ChatInference / JsonInference rows (`function_name`, `variant_name`, `episode_id`, `input`
  and `output` as JSON strings) → responses keyed by inference id. The input's `system` and
  `messages` (content blocks: text, raw_text, template, tool_call, tool_result) become a chat
  transcript; a chat output's text blocks are the completion (tool calls alone: no text), a
  JSON function's output its `raw` JSON. variant_name → model_version, episode_id →
  conversation_id, `tags.user_id` → user_id.
- BooleanMetricFeedback / FloatMetricFeedback rows (`target_id`, `metric_name`, `value`) → a
  thumb when the metric is among the feedback names (a float by the thumb rule); other metrics
  are counted as not_user_feedback.
- DemonstrationFeedback rows (`inference_id`, `value`: an output in the inference's shape),
  and POST /feedback bodies with metric_name "demonstration" → an edit of that inference.
- CommentFeedback → not_user_feedback.

The time of a row is its `timestamp` column when selected (ClickHouse does not return it for
`SELECT *`), else the time in its UUIDv7 id. Feedback on an episode (a target_id that is an
episode id) rates no single response and ends as orphan_feedback.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pandas as pd

from kto_pipeline.ingest.adapters.text import first, json_value
from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import Adapted, Rating, Response, Skipped, SkipReason, target_key

INFERENCE = "tensorzero:inference"


def is_inference(record: dict) -> bool:
    return "function_name" in record and ("input" in record or "output" in record)


def is_feedback(record: dict) -> bool:
    return (
        ("target_id" in record and "target_type" in record)
        or ("metric_name" in record and ("target_id" in record or "inference_id" in record or "episode_id" in record))
        or ("inference_id" in record and "value" in record)
    )


def uuid7_time(ident: Any) -> pd.Timestamp | None:
    """The millisecond time a UUIDv7 carries in its first 48 bits (None for other UUIDs)."""
    try:
        value = uuid.UUID(str(ident))
    except ValueError:
        return None
    if value.version != 7:
        return None
    return pd.Timestamp(value.int >> 80, unit="ms", tz="UTC")


def _when(record: dict) -> Any:
    return record.get("timestamp") if record.get("timestamp") is not None else uuid7_time(record.get("id"))


def _block_text(block: Any, where: str) -> str | None:
    """A content block as text; None for a block that says nothing to the reader (a thought)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        raise ContractError(Reason.BAD_PROMPT, f"{where}: content block of type {type(block).__name__}")
    kind = block.get("type")
    if kind == "text":
        text = block.get("text", block.get("value"))
        return text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, sort_keys=True)
    if kind == "raw_text":
        return str(block.get("value", ""))
    if kind == "template":
        return json.dumps(block.get("arguments"), ensure_ascii=False, sort_keys=True)
    if kind == "tool_call":
        arguments = block.get("arguments", block.get("raw_arguments"))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        return f"[tool call] {block.get('name') or block.get('raw_name')}({arguments})"
    if kind == "tool_result":
        return f"[tool result] {block.get('name')}: {block.get('result')}"
    if kind == "thought":
        return None
    raise ContractError(Reason.BAD_PROMPT, f"{where}: non-text content block {kind!r}")


def _transcript(given: Any) -> list[dict]:
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        raise ContractError(Reason.BAD_PROMPT, "input has no messages list")
    out = []
    system = given.get("system")
    if system is not None:
        out.append(
            {"role": "system", "content": system if isinstance(system, str) else json.dumps(system, sort_keys=True)}
        )
    for i, msg in enumerate(given["messages"]):
        if not isinstance(msg, dict):
            raise ContractError(Reason.BAD_PROMPT, f"message {i} is not an object")
        content = msg.get("content")
        blocks = content if isinstance(content, list) else [content]
        texts = [t for t in (_block_text(b, f"message {i}") for b in blocks) if t is not None]
        out.append({"role": msg.get("role"), "content": "\n".join(texts)})
    return out


def output_text(output: Any, reason: str = Reason.BAD_COMPLETION) -> str:
    """The text of a chat output (content blocks) or a JSON function's output ({raw, parsed})."""
    if isinstance(output, dict) and ("raw" in output or "parsed" in output):
        if output.get("raw") is not None:
            return output["raw"]
        if output.get("parsed") is not None:
            return json.dumps(output["parsed"], ensure_ascii=False, sort_keys=True)
        raise ContractError(reason, "JSON output with neither raw nor parsed")
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise ContractError(reason, f"output of type {type(output).__name__}, expected content blocks")
    texts = [b.get("text") for b in output if isinstance(b, dict) and b.get("type") == "text"]
    if not texts:
        calls = [
            str(b.get("name") or b.get("raw_name"))
            for b in output
            if isinstance(b, dict) and b.get("type") == "tool_call"
        ]
        if calls:
            raise ContractError(
                Reason.TOOL_CALL_RESPONSE,
                f"the response calls tools ({', '.join(calls)}) and has no text; tool calls are not trained on",
            )
        raise ContractError(reason, "output has no text block")
    return "\n".join(t for t in texts if isinstance(t, str))


def _inference(record: dict) -> Response:
    ident = record.get("id")
    if ident is None:
        raise ContractError(Reason.BAD_FIELD, "inference without an id")
    when = _when(record)
    tags = record.get("tags") if isinstance(record.get("tags"), dict) else {}

    def build() -> CanonicalRecord:
        given = json_value(record.get("input"), "input", Reason.BAD_PROMPT, strict=True)
        output = json_value(record.get("output"), "output", Reason.BAD_COMPLETION, strict=True)
        if output is None:
            raise ContractError(Reason.MISSING_COMPLETION, f"inference {ident} has no output")
        return CanonicalRecord(
            timestamp=when,
            prompt=_transcript(given),
            completion=output_text(output),
            id=ident,
            conversation_id=record.get("episode_id"),
            user_id=first(tags, "user_id", "user"),
            model_version=record.get("variant_name"),
            metadata={"function_name": record.get("function_name"), "variant_name": record.get("variant_name"), **tags},
        )

    return Response.built((target_key(INFERENCE, ident),), build, when, ident)


def _feedback(record: dict, options: IngestOptions) -> Adapted:
    when = _when(record)
    metric = record.get("metric_name")
    ident = None if record.get("id") is None else str(record["id"])
    if metric == "comment" or "target_type" in record:
        return Skipped(SkipReason.NOT_USER_FEEDBACK, "a comment, not a thumb", when)
    if metric is None or metric == "demonstration":  # DemonstrationFeedback rows have no metric_name
        inference = record.get("inference_id")
        if inference is None:
            raise ContractError(Reason.BAD_FIELD, "a demonstration names no inference_id")
        value = json_value(record.get("value"), "demonstration value", Reason.BAD_EDIT, strict=metric is None)
        return Rating((target_key(INFERENCE, inference),), when, None, output_text(value, Reason.BAD_EDIT), ident)
    if not options.thumb_rule.is_thumb(metric):
        return Skipped(SkipReason.NOT_USER_FEEDBACK, f"metric {metric!r} is not one of the feedback names", when)
    target = first(record, "target_id", "inference_id")
    if target is None:
        return Skipped(SkipReason.NOT_A_RESPONSE, f"metric {metric!r} rates an episode, not one inference", when)
    label = options.thumb_rule.label(record.get("value"))
    if label is None:
        return Skipped(SkipReason.NEUTRAL_SCORE, f"metric {metric!r} = {record.get('value')!r} is neutral", when)
    return Rating((target_key(INFERENCE, target),), when, label, None, ident)


def from_tensorzero(record: dict, options: IngestOptions) -> Adapted:
    return _inference(record) if is_inference(record) else _feedback(record, options)
