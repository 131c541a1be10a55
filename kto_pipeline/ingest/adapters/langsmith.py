"""LangSmith: runs (list_runs as JSON/JSONL, the bulk export as Parquet) and feedback.

- a run → a response keyed by its id. `inputs`/`outputs`/`extra` may be JSON-encoded strings
  (Parquet). LLM runs' outputs are LangChain generations, or a whole ChatCompletion when the
  app used wrap_openai; chat-model inputs are `{"messages": [[...]]}`. Ids: `extra.metadata`
  `user_id` → user_id, `thread_id`/`session_id`/`conversation_id` → conversation_id,
  `model_version`/`ls_model_name` → model_version. A run may carry a `feedback` list inline.
- feedback (list_feedback: `run_id`, `key`, `score`, `value`, `correction`, `created_at`) →
  a rating of its run: a key among the feedback names is a thumb (`score`, else `value`), a
  `correction` an edit; other keys (evaluators') are counted as not_user_feedback.
- a flat row of one feedback joined with its run (both sets of fields) reads as the run with
  that feedback inline.
"""

from __future__ import annotations

from typing import Any

from kto_pipeline.ingest.adapters.text import completion_value, first, json_value, prompt_value
from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import Adapted, Rating, Response, Skipped, SkipReason, target_key

RUN = "langsmith:run"


def is_feedback(record: dict) -> bool:
    return "key" in record and "run_id" in record and "inputs" not in record and "outputs" not in record


def _feedback(feedback: dict, options: IngestOptions) -> Adapted:
    when = feedback.get("created_at")
    key = feedback.get("key")
    run_id = feedback.get("run_id")
    correction = feedback.get("correction")
    thumb = options.thumb_rule.is_thumb(key)
    if not thumb and correction is None:
        return Skipped(SkipReason.NOT_USER_FEEDBACK, f"feedback key {key!r} is not one of the feedback names", when)
    label = None
    if thumb:
        value = feedback.get("score") if feedback.get("score") is not None else feedback.get("value")
        if value is not None:
            label = options.thumb_rule.label(value)
            if label is None and correction is None:
                return Skipped(
                    SkipReason.NEUTRAL_SCORE, f"feedback {key!r} = {value!r} is between the thumb bounds", when
                )
        elif correction is None:
            raise ContractError(Reason.MISSING_LABEL, f"feedback {key!r} has neither a score nor a value")
    edit = None
    if correction is not None:
        edit = completion_value(json_value(correction, "correction", Reason.BAD_EDIT, False), Reason.BAD_EDIT)
    targets = () if run_id is None else (target_key(RUN, run_id),)
    if not targets:
        return Skipped(SkipReason.NOT_A_RESPONSE, f"feedback {key!r} rates no run (a session or an experiment)", when)
    return Rating(targets, when, label, edit, None if feedback.get("id") is None else str(feedback["id"]))


def _metadata(record: dict) -> Any:
    extra = json_value(record.get("extra"), "extra", Reason.BAD_FIELD, False)
    return extra.get("metadata") if isinstance(extra, dict) else None


def _run(record: dict, ident: Any) -> Response:
    meta = _metadata(record)
    # Ids are read from an object only (a string `metadata` raised AttributeError); any other
    # value is still kept, as the row's metadata.
    ids = meta if isinstance(meta, dict) else {}
    timestamp = first(record, "start_time", "timestamp")

    def build() -> CanonicalRecord:
        inputs = json_value(record.get("inputs"), "inputs", Reason.BAD_PROMPT, False)
        outputs = json_value(record.get("outputs"), "outputs", Reason.BAD_COMPLETION, False)
        if inputs is None or inputs == {}:
            raise ContractError(Reason.MISSING_PROMPT, f"run {ident} has no inputs")
        if outputs is None or outputs == {}:
            status = f" (status {record.get('status')}: {str(record.get('error'))[:80]})" if record.get("error") else ""
            raise ContractError(Reason.MISSING_COMPLETION, f"run {ident} has no outputs{status}")
        return CanonicalRecord(
            timestamp=timestamp,
            prompt=prompt_value(inputs),
            completion=completion_value(outputs),
            id=ident,
            conversation_id=first(ids, "thread_id", "session_id", "conversation_id"),
            user_id=ids.get("user_id"),
            model_version=first(ids, "model_version", "ls_model_name"),
            metadata=meta or None,
        )

    return Response.built(() if ident is None else (target_key(RUN, ident),), build, timestamp, ident)


def from_langsmith(record: dict, options: IngestOptions) -> Adapted:
    if is_feedback(record):
        return _feedback(record, options)
    flat = "key" in record  # one feedback row joined with its run
    ident = first(record, "run_id", "id") if flat else record.get("id")
    response = _run(record, ident)
    feedback = [dict(record, run_id=ident)] if flat else record.get("feedback")
    if feedback is not None and not isinstance(feedback, list):
        raise ContractError(Reason.BAD_LABEL, "feedback must be a list")
    for item in feedback or []:
        if isinstance(item, dict):
            rated = _feedback(dict(item, run_id=ident if ident is not None else ""), options)
            if isinstance(rated, Rating):
                response.ratings.append(rated)
    return response
