"""Dumps → normalised training rows, a quarantine and a ledger, assigned to feedback weeks.

Every record read ends in exactly one place (see ledger.py): kept, quarantined with a reason,
or skipped with a reason. Whole records (the contract, TRL rows, inline-scored traces) are
checked as they are read; responses and ratings exported apart are matched by join.py once
every dump has been read, so feedback finds its response in whichever dump holds it, and the
row lands in the week the feedback was given.

A record whose week cannot be read (a malformed line, a missing timestamp), that falls before
the first week, or that is later than its dump was written, is placed in its dump's home week:
the earliest week the dump's readable timestamps fall in. Records are processed in dump-name
and line order, so the first occurrence of a duplicate is the one kept, on every rerun.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.adapters import adapt, format_of
from kto_pipeline.ingest.contract import (
    QUARANTINE_DTYPES,
    ROW_DTYPES,
    CanonicalRecord,
    ContractError,
    Reason,
    frame_from_records,
    parse_timestamp,
)
from kto_pipeline.ingest.dumps import DumpFile, DumpReadError, read_dump, safe_preview
from kto_pipeline.ingest.join import HeldRating, HeldResponse, Joined, Origin, join
from kto_pipeline.ingest.ledger import (
    KEPT,
    QUARANTINED,
    ROLE_RATING,
    ROLE_RECORD,
    ROLE_RESPONSE,
    SKIPPED,
    UNREADABLE_FORMAT,
    IngestResult,
    ledger_frame,
    records_kept,
)
from kto_pipeline.ingest.options import IngestOptions
from kto_pipeline.ingest.parts import DUMP_WRITTEN_AT, Rating, Response, Skipped, SkipReason
from kto_pipeline.ingest.records import FUTURE_TOLERANCE, checked_timestamp, record_rows

__all__ = ["FUTURE_TOLERANCE", "IngestOptions", "IngestResult", "ingest", "records_kept"]

_TIMESTAMP_KEYS = ("timestamp", "created_at", "start_time", "startTime", "created", "time")


def _lenient_timestamp(value: Any) -> pd.Timestamp | None:
    if is_missing(value):
        return None
    try:
        return parse_timestamp(value)
    except ContractError:
        return None


def _raw_timestamp(value: Any) -> pd.Timestamp | None:
    """The record's timestamp when readable, for placing a quarantined record in its week."""
    if not isinstance(value, dict):
        return None
    for key in _TIMESTAMP_KEYS:
        if value.get(key) is not None:
            return _lenient_timestamp(value[key])
    return None


def _preview(value: Any) -> str:
    return safe_preview(json.dumps(value, ensure_ascii=False, default=str))


@dataclass
class _Collected:
    options: IngestOptions
    storage_options: dict | None = None
    rows: list[dict] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)  # ledger entries of kept and skipped records
    quarantine: list[dict] = field(default_factory=list)
    trivial: Counter = field(default_factory=Counter)
    seen: dict[str, str] = field(default_factory=dict)  # record id → where it was first read
    responses: list[HeldResponse] = field(default_factory=list)
    ratings: list[HeldRating] = field(default_factory=list)
    home: dict[str, str] = field(default_factory=dict)  # dump → home week
    not_after: dict[str, pd.Timestamp | None] = field(default_factory=dict)

    def week_or_home(self, ts: pd.Timestamp | None, dump: str) -> str:
        """The week of `ts` if it is one the calendar can close, else the dump's home week."""
        cal, limit = self.options.calendar, self.not_after.get(dump)
        if ts is None or cal.week_of(ts) < cal.first_week or (limit is not None and ts > limit):
            return self.home[dump]
        return cal.week_of(ts)

    def settle(self, origin: Origin, role: str, fate: str, week: str, reason: str | None = None) -> None:
        self.entries.append(
            {"week": week, "dump": origin.dump, "line": origin.line, "format": origin.format, "role": role}
            | {"fate": fate, "reason": reason}
        )

    def quarantined(self, origin: Origin, role: str, week: str, exc: ContractError, raw: str, ts=None) -> None:
        self.quarantine.append(
            {"dump": origin.dump, "line": origin.line, "week": week, "reason": exc.reason, "detail": exc.detail}
            | {"record_id": exc.record_id, "timestamp": ts, "raw": raw, "format": origin.format, "role": role}
        )


@dataclass
class _Waiting:
    """A record whose week is settled once its dump's home week is known."""

    origin: Origin
    ts: pd.Timestamp | None = None
    exc: ContractError | None = None  # quarantined with this reason, or
    skip: Skipped | None = None  # skipped with this one
    raw: str = ""
    at_home: bool = False  # in the home week whatever its time says


def _ingest_dump(dump: DumpFile, acc: _Collected) -> None:
    options, cal = acc.options, acc.options.calendar
    waiting: list[_Waiting] = []
    weeks_seen: list[str] = []
    not_after = None if dump.mtime is None else pd.Timestamp(dump.mtime, unit="s", tz="UTC") + FUTURE_TOLERANCE
    acc.not_after[dump.name] = not_after

    def note_week(ts: pd.Timestamp | None) -> None:
        if ts is not None and cal.week_of(ts) >= cal.first_week and (not_after is None or ts <= not_after):
            weeks_seen.append(cal.week_of(ts))

    for raw in read_dump(dump, acc.storage_options):
        if raw.reason is not None:
            origin = Origin(dump.name, raw.line, UNREADABLE_FORMAT)
            waiting.append(_Waiting(origin, exc=ContractError(raw.reason, raw.detail), raw=raw.raw))
            continue
        origin = Origin(dump.name, raw.line, format_of(raw.value, options.format))
        try:
            adapted = adapt(raw.value, options)
            if isinstance(adapted, CanonicalRecord):
                if adapted.timestamp == DUMP_WRITTEN_AT:
                    adapted = dataclasses.replace(adapted, timestamp=_written_at(dump))
                ts, record_id, rows, trivial_edit = record_rows(adapted, options, acc.seen, not_after)
                acc.seen[record_id] = str(origin)
                week = cal.week_of(ts)
                weeks_seen.append(week)
                acc.trivial[week] += int(trivial_edit)
                acc.rows.extend({**row, "week": week, "dump": dump.name, "line": raw.line} for row in rows)
                acc.settle(origin, ROLE_RECORD, KEPT, week)
            elif isinstance(adapted, Response):
                inline = [
                    HeldRating(r, origin, _rating_time(r, options, not_after), inline=True) for r in adapted.ratings
                ]
                ts = _lenient_timestamp(adapted.record.timestamp)
                note_week(ts)
                acc.responses.append(HeldResponse(adapted, origin, ts, _preview(raw.value), inline))
            elif isinstance(adapted, Rating):
                ts = _rating_time(adapted, options, not_after)
                note_week(ts)
                acc.ratings.append(HeldRating(adapted, origin, ts, _preview(raw.value)))
            else:
                ts = _lenient_timestamp(adapted.timestamp)
                note_week(ts)
                waiting.append(_Waiting(origin, ts, skip=adapted))
        except ContractError as exc:
            ts = _raw_timestamp(raw.value)
            # A record dated after its dump was written goes to the home week: its own week may
            # never close (week_or_home also catches one that failed an earlier rule).
            future = exc.reason == Reason.FUTURE_TIMESTAMP
            if not future:
                note_week(ts)
            waiting.append(_Waiting(origin, ts, exc=exc, raw=_preview(raw.value), at_home=future))
    acc.home[dump.name] = min(weeks_seen) if weeks_seen else _fallback_week(dump, cal)
    for item in waiting:
        week = acc.home[dump.name] if item.at_home else acc.week_or_home(item.ts, dump.name)
        if item.skip is not None:
            acc.settle(item.origin, ROLE_RECORD, SKIPPED, week, item.skip.reason)
        else:
            acc.quarantined(item.origin, ROLE_RECORD, week, item.exc, item.raw, item.ts)


def _written_at(dump: DumpFile) -> pd.Timestamp:
    if dump.mtime is None:
        raise ContractError(Reason.MISSING_TIMESTAMP, "the record has no time and its dump's write time is unknown")
    return pd.Timestamp(dump.mtime, unit="s", tz="UTC")


def _rating_time(rating: Rating, options: IngestOptions, not_after: pd.Timestamp | None) -> pd.Timestamp | None:
    return None if is_missing(rating.timestamp) else checked_timestamp(rating.timestamp, options, not_after)


def _settle_joined(item: Joined, acc: _Collected) -> None:
    held, options = item.held, acc.options
    record = dataclasses.replace(
        held.response.record,
        label=item.label,
        edited_completion=item.edit,
        timestamp=item.timestamp if item.timestamp is not None else held.response.record.timestamp,
    )
    external = [r for r in item.used + item.superseded if not r.inline]
    try:
        if held.response.error is not None:
            raise held.response.error
        # A rating's time was checked against its own dump's date (the response's dump may be
        # older); a time that comes from the response is checked against the response's dump.
        dated_by_response = all(r.timestamp is None for r in item.used)
        not_after = acc.not_after.get(held.origin.dump) if dated_by_response else None
        ts, record_id, rows, trivial_edit = record_rows(record, options, acc.seen, not_after)
    except ContractError as exc:
        week = acc.week_or_home(item.timestamp, held.origin.dump)
        acc.quarantined(held.origin, ROLE_RESPONSE, week, exc, held.raw, item.timestamp)
        for r in external:
            acc.settle(r.origin, ROLE_RATING, SKIPPED, week, SkipReason.RESPONSE_QUARANTINED)
        return
    acc.seen[record_id] = str(held.origin)
    week = options.calendar.week_of(ts)
    acc.trivial[week] += int(trivial_edit)
    acc.rows.extend({**row, "week": week, "dump": held.origin.dump, "line": held.origin.line} for row in rows)
    acc.settle(held.origin, ROLE_RESPONSE, KEPT, week)
    for r in external:
        fate, reason = (KEPT, None) if any(r is u for u in item.used) else (SKIPPED, SkipReason.SUPERSEDED)
        acc.settle(r.origin, ROLE_RATING, fate, week, reason)


def _settle_join(acc: _Collected) -> None:
    result = join(acc.responses, acc.ratings, pd.Timedelta(days=acc.options.feedback_lookback_days))
    for item in result.joined:
        _settle_joined(item, acc)
    for held in result.unrated:
        acc.settle(
            held.origin, ROLE_RESPONSE, SKIPPED, acc.week_or_home(held.timestamp, held.origin.dump), SkipReason.UNRATED
        )
    for orphan in result.orphans:
        r = orphan.rating
        week = acc.week_or_home(r.timestamp, r.origin.dump)
        acc.quarantined(
            r.origin, ROLE_RATING, week, ContractError(Reason.ORPHAN_FEEDBACK, orphan.detail), r.raw, r.timestamp
        )
    for dup in result.duplicates:
        exc = ContractError(
            Reason.DUPLICATE_RECORD, f"record {dup.record_id} already read at {dup.first}", dup.record_id
        )
        acc.quarantined(
            dup.origin, dup.role, acc.week_or_home(dup.timestamp, dup.origin.dump), exc, dup.raw, dup.timestamp
        )


def ingest(
    dumps: Iterable[DumpFile],
    options: IngestOptions | None = None,
    storage_options: dict | None = None,
    unreadable: dict[str, str] | None = None,
) -> IngestResult:
    """Every record of `dumps`, joined and assigned to weeks. A dump that cannot be read at all
    raises DumpReadError, unless `unreadable` is given: then it is left out and listed there."""
    acc = _Collected(options or IngestOptions(), storage_options)
    for dump in sorted(dumps, key=lambda d: d.name):
        try:
            _ingest_dump(dump, acc)
        except DumpReadError as exc:  # raised before the dump yields a record
            if unreadable is None:
                raise
            unreadable[dump.name] = str(exc)
    _settle_join(acc)
    quarantine = sorted(acc.quarantine, key=lambda e: (e["dump"], e["line"]))
    ledger = acc.entries + [
        {k: e[k] for k in ("week", "dump", "line", "format", "role", "reason")} | {"fate": QUARANTINED}
        for e in quarantine
    ]
    rows = sorted(acc.rows, key=lambda r: (r["dump"], r["line"]))  # stable: an edit's two rows stay in order
    return IngestResult(
        frame_from_records(rows, ROW_DTYPES),
        frame_from_records(quarantine, QUARANTINE_DTYPES),
        ledger_frame(ledger),
        +acc.trivial,
    )


def _fallback_week(dump: DumpFile, cal: WeekCalendar) -> str:
    """Home week of a dump with no readable timestamp at all: the week it was written."""
    if dump.mtime is None:
        return cal.first_week
    week = cal.week_of(pd.Timestamp(dump.mtime, unit="s", tz="UTC"))
    return max(week, cal.first_week)
