"""The capture service's segments (kto_pipeline.capture): response and feedback events.

- `{"event": "response", "event_id", "id", "timestamp", "prompt", "completion", ...}` → a
  response keyed by its id (the contract's fields);
- `{"event": "feedback", "event_id", "response_id", "timestamp", "label", "edited_completion"}`
  → a rating of that response (`label` "up"/"down"), its event id guarding against repeats.
"""

from __future__ import annotations

from kto_pipeline.ingest.adapters.plain import common_fields
from kto_pipeline.ingest.contract import CanonicalRecord, ContractError, Reason, normalise_label
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import Adapted, Rating, Response, target_key

RESPONSE = "capture:response"


def is_event(record: dict) -> bool:
    return record.get("event") in ("response", "feedback") and "event_id" in record


def from_capture(record: dict, options: IngestOptions) -> Adapted:
    kind = record.get("event")
    if kind == "feedback":
        target = record.get("response_id")
        if target is None:
            raise ContractError(Reason.BAD_FIELD, "feedback event without a response_id")
        label = None if record.get("label") is None else normalise_label(record["label"])
        edit = record.get("edited_completion")
        if label is None and edit is None:
            raise ContractError(Reason.MISSING_LABEL, "feedback event with neither a label nor an edit")
        return Rating((target_key(RESPONSE, target),), record.get("timestamp"), label, edit, str(record["event_id"]))
    if kind != "response":
        raise ContractError(Reason.UNKNOWN_FORMAT, f"capture event of kind {kind!r}")
    ident = record.get("id")
    if ident is None:
        raise ContractError(Reason.BAD_FIELD, "response event without an id")
    return Response(
        (target_key(RESPONSE, ident),),
        CanonicalRecord(prompt=record.get("prompt"), completion=record.get("completion"), **common_fields(record)),
    )
