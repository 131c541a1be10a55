"""The feedback contract: field normalisation, row ids, reasons and the output schemas.

One input record describes one response shown in production. Adapters (see adapters.py)
turn the many export shapes into a `CanonicalRecord`; this module owns the rules that make a
field valid and the schemas of the rows and quarantine frames every later step relies on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing


class Reason:
    """Quarantine reasons. Stable strings: dashboards and tests key on them."""

    MALFORMED_JSON = "malformed_json"
    MALFORMED_CSV = "malformed_csv"
    BAD_UTF8 = "bad_utf8"
    TRUNCATED_FILE = "truncated_file"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    BEFORE_START_DATE = "before_start_date"
    FUTURE_TIMESTAMP = "future_timestamp"
    MISSING_PROMPT = "missing_prompt"
    BAD_PROMPT = "bad_prompt"
    MISSING_COMPLETION = "missing_completion"
    BAD_COMPLETION = "bad_completion"
    MISSING_LABEL = "missing_label"
    BAD_LABEL = "bad_label"
    BAD_EDIT = "bad_edit"
    BAD_FIELD = "bad_field"
    TEXT_TOO_LONG = "text_too_long"
    DUPLICATE_RECORD = "duplicate_record"
    TOOL_CALL_RESPONSE = "tool_call_response"  # a rated response that only calls tools: no text to train on
    ORPHAN_FEEDBACK = "orphan_feedback"  # feedback whose response is in no dump within the look-back


class ContractError(ValueError):
    """A record violates the contract; `reason` is one of `Reason`."""

    def __init__(self, reason: str, detail: str, record_id: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.record_id = record_id  # set when the record was identified before it failed


# Signals: where a training row's label comes from.
SIGNAL_THUMB = "thumb"
SIGNAL_EDIT = "edit"  # the user's edited text: desirable
SIGNAL_EDIT_ORIGINAL = "edit_original"  # the text the user had to fix: undesirable
SIGNAL_PAIR_CHOSEN = "pair_chosen"
SIGNAL_PAIR_REJECTED = "pair_rejected"
SIGNAL_DEMONSTRATION = "demonstration"  # a fine-tuning example the team wrote or approved: desirable
SIGNAL_SYNTHETIC_IMPROVED = "synthetic_improved"  # a teacher's better answer to a thumbs-down prompt: desirable
SIGNAL_SYNTHETIC_DEGRADED = (
    "synthetic_degraded"  # a teacher's deliberately flawed answer to a thumbs-up prompt: undesirable
)

SOURCE_PRODUCTION = "production"
SOURCE_SYNTHETIC = "synthetic"

# Column order and dtypes of the normalised rows. Every later asset keeps these columns.
ROW_DTYPES: dict[str, str] = {
    "row_id": "str",
    "record_id": "str",
    "week": "str",
    "timestamp": "datetime64[us, UTC]",
    "prompt": "str",
    "prompt_messages": "str",  # JSON list of {role, content}; null for a plain-text prompt
    "completion": "str",
    "label": "bool",  # True: desirable (thumbs up or the user's edit)
    "signal": "str",
    "source": "str",
    "conversation_id": "str",
    "user_id": "str",
    "model_version": "str",
    "metadata": "str",  # JSON object or null
    "dump": "str",
    "line": "int64",
}

QUARANTINE_DTYPES: dict[str, str] = {
    "dump": "str",
    "line": "int64",  # 1-based record number in the dump; 0 for a file-level problem
    "week": "str",
    "reason": "str",
    "detail": "str",
    "record_id": "str",
    "timestamp": "datetime64[us, UTC]",
    "raw": "str",  # a preview of the offending input, capped at RAW_PREVIEW_CHARS
}

RAW_PREVIEW_CHARS = 2000

_TRUE_LABELS = {
    "true",
    "t",
    "yes",
    "y",
    "1",
    "+1",
    "up",
    "thumbs_up",
    "thumbsup",
    "thumbs-up",
    "thumbs up",
    "thumb_up",
    "like",
    "liked",
    "good",
    "positive",
    "desirable",
    "👍",
}
_FALSE_LABELS = {
    "false",
    "f",
    "no",
    "n",
    "0",
    "-1",
    "down",
    "thumbs_down",
    "thumbsdown",
    "thumbs-down",
    "thumbs down",
    "thumb_down",
    "dislike",
    "disliked",
    "bad",
    "negative",
    "undesirable",
    "👎",
}


def normalise_label(value: Any) -> bool:
    """Thumbs in any common spelling → True (desirable) / False (undesirable)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            raise ContractError(Reason.MISSING_LABEL, "label is NaN")
        if value == 1:
            return True
        if value in (0, -1):
            return False
        raise ContractError(Reason.BAD_LABEL, f"numeric label must be 1, 0 or -1, got {value!r}")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _TRUE_LABELS:
            return True
        if key in _FALSE_LABELS:
            return False
        if _NUMBER_TEXT.match(key):  # "1.0": pandas writes integer labels so when one is missing
            return normalise_label(float(key))
        raise ContractError(Reason.BAD_LABEL, f"unrecognised label {value[:40]!r}")
    raise ContractError(Reason.BAD_LABEL, f"label of type {type(value).__name__}")


# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
_EPOCH_MS_THRESHOLD = 1e11
_NUMBER_TEXT = re.compile(r"^[+-]?\d+(\.\d*)?$")
_EPOCH_TEXT = re.compile(r"^\s*-?\d{9,14}(\.\d+)?\s*$")
_RELATIVE_TIMES = {"now", "today"}


def parse_timestamp(value: Any) -> pd.Timestamp:
    """ISO 8601 text, epoch seconds or milliseconds, or a datetime → a UTC timestamp.

    A timestamp without a zone is read as UTC: production logs are UTC far more often than not,
    and guessing a local zone would move records across week boundaries.
    """
    if isinstance(value, bool) or value is None:
        raise ContractError(Reason.BAD_TIMESTAMP, f"timestamp of type {type(value).__name__}")
    if isinstance(value, str) and _EPOCH_TEXT.match(value):
        value = float(value)  # CSV cells are text: "1791277200" is epoch seconds
    try:
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("not finite")
            unit = "ms" if abs(value) > _EPOCH_MS_THRESHOLD else "s"
            ts = pd.Timestamp(value, unit=unit, tz="UTC")
        elif isinstance(value, (str, datetime, date, pd.Timestamp)):
            if isinstance(value, str) and not value.strip():
                raise ContractError(Reason.MISSING_TIMESTAMP, "timestamp is empty")
            if isinstance(value, str) and value.strip().lower() in _RELATIVE_TIMES:
                # pandas reads "now" and "today" as the clock at parse time: the record's week
                # would depend on when the dump is read, and a rerun would move it.
                raise ContractError(Reason.BAD_TIMESTAMP, f"{value.strip()!r} is not a point in time")
            ts = pd.Timestamp(value)
            if pd.isna(ts):
                raise ValueError("not a time")
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        else:
            raise ContractError(Reason.BAD_TIMESTAMP, f"timestamp of type {type(value).__name__}")
    except ContractError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:
        raise ContractError(Reason.BAD_TIMESTAMP, f"cannot parse {str(value)[:60]!r}: {exc}") from None
    return ts.as_unit("us")


def _message_text(content: Any, where: str, reason: str) -> str:
    """Text of a chat message's content: a string or OpenAI's list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ContractError(reason, f"{where}: non-text content part {kind!r}")
        return "".join(texts)
    raise ContractError(reason, f"{where}: content of type {type(content).__name__}")


def normalise_messages(messages: Any, reason: str) -> list[dict[str, str]]:
    """A chat transcript → [{role, content}] with text content; anything else is `reason`."""
    if not isinstance(messages, list) or not messages:
        raise ContractError(reason, "chat messages must be a non-empty list")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ContractError(reason, f"message {i} is not a {{role, content}} object")
        out.append({"role": msg["role"], "content": _message_text(msg.get("content"), f"message {i}", reason)})
    return out


def render_messages(messages: list[dict[str, str]]) -> str:
    """One deterministic text rendering of a transcript, for text-level steps (PII, dedup)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def optional_str(value: Any, name: str) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise ContractError(Reason.BAD_FIELD, f"{name} of type {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # CSV and Parquet readers turn integer ids into floats
    return str(value)


def metadata_json(value: Any) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, str):
        # Not only JSONDecodeError: a 5000-digit number is a ValueError and deep nesting a
        # RecursionError (reading or writing back), and either failed the whole week.
        try:
            parsed = json.loads(value)
            return json.dumps(
                parsed if isinstance(parsed, dict) else {"value": parsed},
                sort_keys=True,
                ensure_ascii=False,
                default=str,
            )
        except (ValueError, RecursionError):
            value = {"value": value}
    if not isinstance(value, dict):
        value = {"value": value}
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@dataclass
class CanonicalRecord:
    """One input record after its adapter, before validation of lengths and expansion.

    `kind` is "feedback" (a response with a thumb and/or an edit), "pair" (a chosen/rejected
    pair, which becomes one desirable and one undesirable row) or "demonstration" (an example
    answer from a fine-tuning file: one desirable row).
    """

    timestamp: Any
    prompt: Any
    completion: Any = None
    label: Any = None
    edited_completion: Any = None
    id: Any = None
    conversation_id: Any = None
    user_id: Any = None
    model_version: Any = None
    metadata: Any = None
    kind: str = "feedback"
    rejected: Any = None  # for kind == "pair": `completion` is the chosen text


def content_hash(*parts: Any) -> str:
    """A stable 128-bit hex id of JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def frame_from_records(records: list[dict], dtypes: dict[str, str]) -> pd.DataFrame:
    """Records → a frame with exactly the contract's columns and dtypes (also when empty)."""
    df = pd.DataFrame.from_records(records, columns=list(dtypes))
    for col, dtype in dtypes.items():
        if dtype.startswith("datetime64"):
            df[col] = pd.to_datetime(df[col], utc=True).astype(dtype)
        else:
            df[col] = df[col].astype(dtype)
    return df
