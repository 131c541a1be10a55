"""One adapted record → its training rows, or the contract rule it breaks.

The rules that make a field valid live in contract.py; this module applies them to a whole
`CanonicalRecord`: texts present and within length, a readable time inside the calendar, a
label or a big-enough edit, and an id (the record's own, or a hash of its content).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.ingest.contract import (
    SIGNAL_DEMONSTRATION,
    SIGNAL_EDIT,
    SIGNAL_EDIT_ORIGINAL,
    SIGNAL_PAIR_CHOSEN,
    SIGNAL_PAIR_REJECTED,
    SIGNAL_THUMB,
    SOURCE_PRODUCTION,
    CanonicalRecord,
    ContractError,
    Reason,
    content_hash,
    metadata_json,
    normalise_label,
    normalise_messages,
    optional_str,
    parse_timestamp,
    render_messages,
)
from kto_pipeline.ingest.edits import is_trivial_edit
from kto_pipeline.ingest.options import IngestOptions

# Clock skew allowed between the app that logged a record and the store that holds its dump.
FUTURE_TOLERANCE = pd.Timedelta(days=1)


def _text(value: Any, missing: str, bad: str, what: str, max_chars: int) -> str:
    if is_missing(value):
        raise ContractError(missing, f"{what} is missing or empty")
    if not isinstance(value, str):
        raise ContractError(bad, f"{what} of type {type(value).__name__}, expected text")
    if len(value) > max_chars:
        raise ContractError(Reason.TEXT_TOO_LONG, f"{what} has {len(value)} characters (limit {max_chars})")
    return value


def _prompt(value: Any, max_chars: int) -> tuple[str, str | None]:
    """(text, messages JSON or None) of a prompt given as text or chat messages."""
    if isinstance(value, list):
        if not value:
            raise ContractError(Reason.MISSING_PROMPT, "prompt has no messages")
        messages = normalise_messages(value, Reason.BAD_PROMPT)
        text = render_messages(messages)
        if not any(m["content"].strip() for m in messages):
            raise ContractError(Reason.MISSING_PROMPT, "prompt messages are all empty")
        if len(text) > max_chars:
            raise ContractError(Reason.TEXT_TOO_LONG, f"prompt has {len(text)} characters (limit {max_chars})")
        return text, json.dumps(messages, ensure_ascii=False)
    return _text(value, Reason.MISSING_PROMPT, Reason.BAD_PROMPT, "prompt", max_chars), None


def _training_rows(rec: CanonicalRecord, options: IngestOptions) -> tuple[list[tuple[str, bool, str]], bool]:
    """[(completion, label, signal)] of a record, and whether it carried a trivial edit."""
    limit = options.max_text_chars
    if rec.kind == "pair":
        chosen = _text(rec.completion, Reason.MISSING_COMPLETION, Reason.BAD_COMPLETION, "chosen", limit)
        rejected = _text(rec.rejected, Reason.MISSING_COMPLETION, Reason.BAD_COMPLETION, "rejected", limit)
        if chosen == rejected:
            raise ContractError(Reason.BAD_COMPLETION, "chosen and rejected are the same text")
        return [(chosen, True, SIGNAL_PAIR_CHOSEN), (rejected, False, SIGNAL_PAIR_REJECTED)], False
    completion = _text(rec.completion, Reason.MISSING_COMPLETION, Reason.BAD_COMPLETION, "completion", limit)
    if rec.kind == "demonstration":
        return [(completion, True, SIGNAL_DEMONSTRATION)], False
    edit = None
    if options.edits_as_rows and not is_missing(rec.edited_completion):
        edit = _text(rec.edited_completion, Reason.BAD_EDIT, Reason.BAD_EDIT, "edited_completion", limit)
    label = None if is_missing(rec.label) else normalise_label(rec.label)
    if edit is not None and not is_trivial_edit(completion, edit, options.min_edit_distance):
        return [(edit, True, SIGNAL_EDIT), (completion, False, SIGNAL_EDIT_ORIGINAL)], False
    if label is None:
        detail = "label is missing"
        if edit is not None:
            detail = "no label and the edit is too small to count"
        elif not is_missing(rec.edited_completion):
            detail = "no label, and edits do not count (edits_as_rows is off)"
        raise ContractError(Reason.MISSING_LABEL, detail)
    return [(completion, label, SIGNAL_THUMB)], edit is not None


def _record_id(rec: CanonicalRecord, ts: pd.Timestamp, content: tuple) -> str:
    """The record's own id, or a hash of its normalised content: the same feedback gets the
    same id whatever format it arrived in (a CSV "true" and a JSON true are one record)."""
    explicit = optional_str(rec.id, "id")
    if explicit is not None:
        return explicit
    return content_hash(ts.isoformat(), rec.kind, *content)


def checked_timestamp(value: Any, options: IngestOptions, not_after: pd.Timestamp | None) -> pd.Timestamp:
    """A record's time, if it is readable, inside the calendar and not after its dump."""
    if is_missing(value):
        raise ContractError(Reason.MISSING_TIMESTAMP, "timestamp is missing")
    ts = parse_timestamp(value)
    if options.calendar.week_of(ts) < options.calendar.first_week:
        raise ContractError(
            Reason.BEFORE_START_DATE,
            f"timestamp {ts.isoformat()} is before the first week {options.calendar.first_week}",
        )
    if not_after is not None and ts > not_after:
        # Its week may never close (the year 3000), so it would never be seen: say so now.
        raise ContractError(
            Reason.FUTURE_TIMESTAMP,
            f"timestamp {ts.isoformat()} is after its dump was written ({not_after - FUTURE_TOLERANCE:%Y-%m-%d %H:%M} UTC)",
        )
    return ts


def record_rows(
    rec: CanonicalRecord, options: IngestOptions, seen: dict[str, str], not_after: pd.Timestamp | None
) -> tuple[pd.Timestamp, str, list[dict], bool]:
    """(timestamp, record id, training rows without lineage, trivial edit?) or ContractError."""
    ts = checked_timestamp(rec.timestamp, options, not_after)
    prompt, messages = _prompt(rec.prompt, options.max_text_chars)
    out, trivial_edit = _training_rows(rec, options)
    common = {
        "timestamp": ts,
        "prompt": prompt,
        "prompt_messages": messages,
        "source": SOURCE_PRODUCTION,
        "conversation_id": optional_str(rec.conversation_id, "conversation_id"),
        "user_id": optional_str(rec.user_id, "user_id"),
        "model_version": optional_str(rec.model_version, "model_version"),
        "metadata": metadata_json(rec.metadata),
    }
    record_id = _record_id(rec, ts, (prompt, messages, out, common["user_id"], common["conversation_id"]))
    common["record_id"] = record_id
    if record_id in seen:
        raise ContractError(Reason.DUPLICATE_RECORD, f"record {record_id} already read at {seen[record_id]}", record_id)
    rows = [
        {**common, "row_id": content_hash(record_id, signal), "completion": text, "label": label, "signal": signal}
        for text, label, signal in out
    ]
    return ts, record_id, rows, trivial_edit
