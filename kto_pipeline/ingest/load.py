"""Dumps → normalised training rows and a quarantine, assigned to feedback weeks.

Every input record ends in exactly one place: kept (as one row, or two for an edit or a
pair) in the week of its timestamp, or quarantined with a reason. A record whose week cannot
be read (a malformed line, a missing timestamp), that falls before the first week, or that is
later than its dump was written, is quarantined in its dump's home week: the earliest week the
dump's readable timestamps fall in. Records are processed in dump-name and
line order, so the first occurrence of a duplicate is the one kept, on every rerun.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.adapters import ADAPTER_FORMATS, adapt
from kto_pipeline.ingest.contract import (
    QUARANTINE_DTYPES,
    ROW_DTYPES,
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
    frame_from_records,
    metadata_json,
    normalise_label,
    normalise_messages,
    optional_str,
    parse_timestamp,
    render_messages,
)
from kto_pipeline.ingest.dumps import DumpFile, read_dump, safe_preview
from kto_pipeline.ingest.edits import is_trivial_edit

_TIMESTAMP_KEYS = ("timestamp", "created_at", "start_time", "created", "time")
# Clock skew allowed between the app that logged a record and the store that holds its dump.
FUTURE_TOLERANCE = pd.Timedelta(days=1)


@dataclass(frozen=True)
class IngestOptions:
    """How dump records are read: which adapter, which edits count, how long a text may be."""

    format: str = field(default="auto", metadata={"help": f"Adapter: one of {', '.join(ADAPTER_FORMATS)}"})
    min_edit_distance: float = field(
        default=0.02,
        metadata={"help": "Edits closer than this normalised edit distance to the original are ignored"},
    )
    max_text_chars: int = field(default=100_000, metadata={"help": "Longer prompts or responses are quarantined"})
    calendar: WeekCalendar = field(
        default_factory=WeekCalendar, metadata={"help": "The feedback weeks records are assigned to"}
    )


def records_kept(rows: pd.DataFrame) -> int:
    """Input records behind a frame of rows (an edit or a pair gives two rows, one record)."""
    return int(rows[["dump", "line"]].drop_duplicates().shape[0])


@dataclass
class IngestResult:
    rows: pd.DataFrame
    quarantine: pd.DataFrame
    records_in: Counter  # week → records read (kept + quarantined)
    trivial_edits: Counter  # week → edits too small to become rows

    def weeks(self) -> set[str]:
        return set(self.records_in)

    def for_week(self, week: str) -> IngestResult:
        rows = self.rows[self.rows["week"] == week].reset_index(drop=True)
        quarantine = self.quarantine[self.quarantine["week"] == week].reset_index(drop=True)
        return IngestResult(
            rows, quarantine, Counter({week: self.records_in[week]}), Counter({week: self.trivial_edits[week]})
        )

    def summary(self) -> dict[str, Any]:
        """Counts a person checks first; records in = records kept + records quarantined."""
        kept = records_kept(self.rows)
        signals = self.rows["signal"].value_counts()
        return {
            "records_in": int(sum(self.records_in.values())),
            "records_kept": kept,
            "records_quarantined": len(self.quarantine),
            "rows_out": len(self.rows),
            "desirable": int(self.rows["label"].sum()),
            "undesirable": int((~self.rows["label"]).sum()),
            "edits_expanded": int(signals.get(SIGNAL_EDIT, 0)),
            "trivial_edits_skipped": int(sum(self.trivial_edits.values())),
            "pairs_expanded": int(signals.get(SIGNAL_PAIR_CHOSEN, 0)),
            "quarantined_by_reason": {
                str(k): int(v) for k, v in self.quarantine["reason"].value_counts().sort_index().items()
            },
        }


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
    edit = None
    if not is_missing(rec.edited_completion):
        edit = _text(rec.edited_completion, Reason.BAD_EDIT, Reason.BAD_EDIT, "edited_completion", limit)
    label = None if is_missing(rec.label) else normalise_label(rec.label)
    if edit is not None and not is_trivial_edit(completion, edit, options.min_edit_distance):
        return [(edit, True, SIGNAL_EDIT), (completion, False, SIGNAL_EDIT_ORIGINAL)], False
    if label is None:
        detail = "no label and the edit is too small to count" if edit is not None else "label is missing"
        raise ContractError(Reason.MISSING_LABEL, detail)
    return [(completion, label, SIGNAL_THUMB)], edit is not None


def _record_id(rec: CanonicalRecord, ts: pd.Timestamp, content: tuple) -> str:
    """The record's own id, or a hash of its normalised content: the same feedback gets the
    same id whatever format it arrived in (a CSV "true" and a JSON true are one record)."""
    explicit = optional_str(rec.id, "id")
    if explicit is not None:
        return explicit
    return content_hash(ts.isoformat(), rec.kind, *content)


def _raw_timestamp(value: Any) -> pd.Timestamp | None:
    """The record's timestamp when readable, for placing a quarantined record in its week."""
    if not isinstance(value, dict):
        return None
    for key in _TIMESTAMP_KEYS:
        if value.get(key) is not None:
            try:
                return parse_timestamp(value[key])
            except ContractError:
                return None
    return None


def _preview(value: Any) -> str:
    return safe_preview(json.dumps(value, ensure_ascii=False, default=str))


@dataclass
class _Collected:
    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    records_in: Counter = field(default_factory=Counter)
    trivial: Counter = field(default_factory=Counter)
    seen: dict[str, str] = field(default_factory=dict)  # record id → where it was first read


def _parse(
    value: dict, options: IngestOptions, seen: dict[str, str], not_after: pd.Timestamp | None
) -> tuple[pd.Timestamp, str, list[dict], bool]:
    """(timestamp, record id, training rows without lineage, trivial edit?) or ContractError."""
    rec = adapt(value, options.format)
    if is_missing(rec.timestamp):
        raise ContractError(Reason.MISSING_TIMESTAMP, "timestamp is missing")
    ts = parse_timestamp(rec.timestamp)
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


def _ingest_dump(dump: DumpFile, options: IngestOptions, storage_options: dict | None, acc: _Collected) -> None:
    cal = options.calendar
    unplaced: list[dict] = []  # quarantine entries waiting for the dump's home week
    weeks_seen: list[str] = []
    not_after = None if dump.mtime is None else pd.Timestamp(dump.mtime, unit="s", tz="UTC") + FUTURE_TOLERANCE
    for raw in read_dump(dump, storage_options):
        entry = {"dump": dump.name, "line": raw.line, "record_id": None, "timestamp": None}
        if raw.reason is not None:
            entry.update(reason=raw.reason, detail=raw.detail, raw=raw.raw)
            unplaced.append(entry)
            continue
        try:
            ts, record_id, rows, trivial_edit = _parse(raw.value, options, acc.seen, not_after)
        except ContractError as exc:
            ts = _raw_timestamp(raw.value)
            entry.update(
                reason=exc.reason, detail=exc.detail, raw=_preview(raw.value), timestamp=ts, record_id=exc.record_id
            )
            week = None if ts is None else cal.week_of(ts)
            # Not only FUTURE_TIMESTAMP: a record dated after its dump that fails an earlier rule
            # (its adapter, say) must not open a week that may never close either.
            if (
                week is None
                or week < cal.first_week
                or exc.reason == Reason.FUTURE_TIMESTAMP
                or (not_after is not None and ts > not_after)
            ):
                unplaced.append(entry)
            else:
                weeks_seen.append(week)
                acc.quarantine.append({**entry, "week": week})
                acc.records_in[week] += 1
            continue
        acc.seen[record_id] = f"{dump.name}:{raw.line}"
        week = cal.week_of(ts)
        weeks_seen.append(week)
        acc.records_in[week] += 1
        acc.trivial[week] += int(trivial_edit)
        acc.rows.extend({**row, "week": week, "dump": dump.name, "line": raw.line} for row in rows)
    if unplaced:
        home = min(weeks_seen) if weeks_seen else _fallback_week(dump, cal)
        acc.quarantine.extend({**entry, "week": home} for entry in unplaced)
        acc.records_in[home] += len(unplaced)


def ingest(
    dumps: Iterable[DumpFile],
    options: IngestOptions | None = None,
    storage_options: dict | None = None,
) -> IngestResult:
    options = options or IngestOptions()
    acc = _Collected()
    for dump in sorted(dumps, key=lambda d: d.name):
        _ingest_dump(dump, options, storage_options, acc)
    return IngestResult(
        frame_from_records(acc.rows, ROW_DTYPES),
        frame_from_records(sorted(acc.quarantine, key=lambda e: (e["dump"], e["line"])), QUARANTINE_DTYPES),
        +acc.records_in,
        +acc.trivial,
    )


def _fallback_week(dump: DumpFile, cal: WeekCalendar) -> str:
    """Home week of a dump with no readable timestamp at all: the week it was written."""
    if dump.mtime is None:
        return cal.first_week
    week = cal.week_of(pd.Timestamp(dump.mtime, unit="s", tz="UTC"))
    return max(week, cal.first_week)


def weeks_touched(
    dump: DumpFile, options: IngestOptions | None = None, storage_options: dict | None = None
) -> set[str]:
    """The weeks whose rows or quarantine this dump contributes to."""
    return ingest([dump], options, storage_options).weeks()
