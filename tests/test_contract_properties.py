"""Property tests (hypothesis) on the feedback contract's parser and `ingest`.

Arbitrary mixtures of valid records and garbage (random bytes, random JSON values, records with
a field deleted, mistyped or huge, adapter-shaped junk, hostile lines) never make ingest raise;
every record read is kept or quarantined with a reason, exactly once; every valid record is kept
with the rows the contract promises; the output satisfies the contract; the same input gives the
same frames. Deterministic (`derandomize=True`, no example database), so CI sees the same examples.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.contract import (
    QUARANTINE_DTYPES,
    RAW_PREVIEW_CHARS,
    ROW_DTYPES,
    ContractError,
    Reason,
    normalise_label,
    parse_timestamp,
)
from kto_pipeline.ingest.dumps import list_dumps
from kto_pipeline.ingest.edits import is_trivial_edit
from kto_pipeline.ingest.load import FUTURE_TOLERANCE, IngestOptions, IngestResult, ingest

CAL = WeekCalendar(start_date="2025-01-06", day_offset=1)
LIMIT = 300  # max_text_chars: "huge" texts are huge relative to it, and cheap to generate
MIN_EDIT = 0.02
OPTIONS = IngestOptions(max_text_chars=LIMIT, min_edit_distance=MIN_EDIT, calendar=CAL)
WRITTEN = datetime(2026, 7, 1, 12, tzinfo=UTC)  # every dump's mtime: valid records are dated before it
FIRST_S = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp())
LAST_S = int(datetime(2025, 1, 26, 23, 59, tzinfo=UTC).timestamp())  # three weeks: boundaries, and few frames to check
REASONS = {v for k, v in vars(Reason).items() if k.isupper()}
SIGNALS = {"thumb", "edit", "edit_original", "pair_chosen", "pair_rejected"}
EMPTY_DTYPES = {dtype: pd.Series([], dtype=dtype).dtype for dtype in {**ROW_DTYPES, **QUARANTINE_DTYPES}.values()}

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------- strategies

TRUE_LABELS = [True, 1, 1.0, "true", "True", "up", " Up ", "thumbs_up", "👍", "1", "+1", "yes", "like", "1.0"]
FALSE_LABELS = [False, 0, -1, "false", "down", "thumbs_down", "👎", "0", "-1", "no", "dislike", "-1.0"]

texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Keys the adapters look at, so junk reaches deep into every adapter instead of stopping at
# "no adapter recognises keys".
ADAPTER_KEYS = [
    "timestamp",
    "created_at",
    "created",
    "start_time",
    "prompt",
    "completion",
    "label",
    "edited_completion",
    "id",
    "run_id",
    "messages",
    "role",
    "content",
    "chosen",
    "rejected",
    "input",
    "output",
    "scores",
    "traceId",
    "sessionId",
    "name",
    "dataType",
    "stringValue",
    "value",
    "inputs",
    "outputs",
    "feedback",
    "key",
    "score",
    "correction",
    "extra",
    "metadata",
    "lc",
    "kwargs",
    "type",
    "generations",
    "text",
    "message",
    "user_id",
    "thread_id",
]
adapter_junk = st.recursive(
    json_scalars | st.sampled_from(ADAPTER_KEYS + ["assistant", "user", "CATEGORICAL", "CORRECTION", "thumbs", "ai"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(ADAPTER_KEYS), inner, max_size=5),
    max_leaves=16,
)

# Values that broke, or could break, a parser that trusts its input.
TRICKY_VALUES = [
    "",
    "   ",
    "now",
    "today",
    "NaT",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2025-02-30T10:00:00Z",
    10**30,
    -1,
    0,
    float("inf"),
    float("nan"),
    True,
    [],
    {},
    [[]],
    [{"role": "user"}],
    [{"role": 1, "content": "x"}],
    [{"role": "user", "content": [{"type": "image_url"}]}],
    {"lc": 1, "id": [], "kwargs": {}},
    {"lc": 1, "id": [["x"]], "kwargs": {"content": "y"}},
    {"type": ["x"], "content": "y"},
    {"type": {}, "content": "y"},
    {"messages": "nope"},
    {"generations": [[]]},
    {"generations": [[{"text": ""}]]},
    "\ud800 lone surrogate",
    "\x00 nul",
    "😀" * 5,
]
TRICKY_LINES = [
    b"[" * 3000 + b"]" * 3000,  # deeper than json.loads can go
    b'{"a": ' * 150 + b"1" + b"}" * 150,  # parseable, deeper than any export
    b'{"timestamp": 1, "label": ' + b"7" * 5000 + b"}",  # an int over Python's 4300-digit limit
    b"NaN",
    b"-Infinity",
    b"{}",
    b"[]",
    b'""',
    b"null",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe\xfd",
    b"\xc0\xaf",
    b'{"prompt": "\\ud800", "completion": "c", "label": 1, "timestamp": "2025-03-04T00:00:00Z"}',
    b'{"prompt": "p", "completion": "c", "label": 1, "timestamp": "2025-03-04T00:00:00Z", "id": "dup"}',
    b'{"prompt": "p", "completion": "c", "label": 1, "timestamp": "2025-03-04T00:00:00Z", "id": "dup"}',
    b'{"prompt": "p", "completion": "c", "label": 1, "timestamp": "2025-03-04T00:00:00Z", "id": "dup",',
]


@dataclass
class Item:
    """One line of a dump: a valid record (with what the contract promises for it), or junk."""

    line: bytes
    valid: dict | None = None  # the record, when valid
    label: bool | None = None
    ts: pd.Timestamp | None = None
    prompt: str | None = None
    expected_reason: str | None = None  # junk whose reason is known


def _timestamp_value(draw, seconds: int) -> tuple[Any, pd.Timestamp]:
    micros = draw(st.integers(0, 999)) * 1000
    ts = pd.Timestamp(seconds, unit="s", tz="UTC") + pd.Timedelta(microseconds=micros)
    dt = ts.to_pydatetime()
    kind = draw(st.sampled_from(["z", "offset", "naive", "epoch_s", "epoch_ms", "epoch_text"]))
    if kind == "z":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), ts
    if kind == "offset":
        hours = draw(st.integers(-12, 14))
        return dt.astimezone(timezone(timedelta(hours=hours))).isoformat(), ts
    if kind == "naive":  # no zone: UTC
        return dt.replace(tzinfo=None).isoformat(), ts
    if kind == "epoch_ms":
        return seconds * 1000 + micros // 1000, ts
    ts = pd.Timestamp(seconds, unit="s", tz="UTC")
    return (seconds if kind == "epoch_s" else str(seconds)), ts


@st.composite
def valid_records(draw, with_edit: bool = True) -> Item:
    value, ts = _timestamp_value(draw, draw(st.integers(FIRST_S, LAST_S)))
    label = draw(st.booleans())
    record: dict[str, Any] = {
        "timestamp": value,
        "completion": draw(texts),
        "label": draw(st.sampled_from(TRUE_LABELS if label else FALSE_LABELS)),
    }
    if draw(st.booleans()):
        record["prompt"] = prompt = draw(texts)
    else:
        messages = [
            {"role": draw(st.sampled_from(["user", "system"])), "content": draw(texts)}
            for _ in range(draw(st.integers(1, 3)))
        ]
        record["prompt"] = messages
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    if with_edit and draw(st.booleans()):
        record["edited_completion"] = draw(st.sampled_from([record["completion"] + " ", record["completion"]]) | texts)
    for key, strategy in (
        ("user_id", texts | st.integers(0, 10**6)),
        ("conversation_id", texts),
        ("model_version", texts),
        ("metadata", st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)),
    ):
        if draw(st.booleans()):
            record[key] = draw(strategy)
    return Item(b"", valid=record, label=label, ts=ts, prompt=prompt)


def _dump_line(value: Any) -> bytes:
    # surrogatepass: a lone surrogate in a junk value must reach the file, as CESU bytes (bad UTF-8)
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# Faults with a known reason, each applied to an otherwise valid record without an edit.
KNOWN_FAULTS: list[tuple[str, Callable[[dict], None]]] = [
    (Reason.MISSING_TIMESTAMP, lambda r: r.pop("timestamp")),
    (Reason.MISSING_PROMPT, lambda r: r.pop("prompt")),
    (Reason.MISSING_COMPLETION, lambda r: r.update(completion="  ")),
    (Reason.MISSING_LABEL, lambda r: r.pop("label")),
    (Reason.BAD_LABEL, lambda r: r.update(label="maybe")),
    (Reason.BAD_LABEL, lambda r: r.update(label=2)),
    (Reason.BAD_TIMESTAMP, lambda r: r.update(timestamp="now")),
    (Reason.BAD_TIMESTAMP, lambda r: r.update(timestamp="last tuesday")),
    (Reason.BAD_PROMPT, lambda r: r.update(prompt=42)),
    (Reason.BAD_COMPLETION, lambda r: r.update(completion={"x": 1, "y": 2})),
    (Reason.BAD_FIELD, lambda r: r.update(user_id={"id": 1})),
    (Reason.BAD_EDIT, lambda r: r.update(edited_completion=17)),
    (Reason.TEXT_TOO_LONG, lambda r: r.update(completion="x" * (LIMIT + 1))),
    (Reason.TEXT_TOO_LONG, lambda r: r.update(prompt="p" * (LIMIT * 3))),
    (Reason.BEFORE_START_DATE, lambda r: r.update(timestamp="2024-12-31T23:59:59Z")),
    (Reason.FUTURE_TIMESTAMP, lambda r: r.update(timestamp="3000-01-01T00:00:00Z")),
    (
        Reason.FUTURE_TIMESTAMP,
        lambda r: r.update(timestamp=(WRITTEN + FUTURE_TOLERANCE + timedelta(hours=1)).isoformat()),
    ),
    (Reason.UNKNOWN_FORMAT, lambda r: [r.pop(k) for k in ("prompt", "completion")]),
]


@st.composite
def known_faults(draw) -> Item:
    record = dict(draw(valid_records(with_edit=False)).valid)
    reason, fault = draw(st.sampled_from(KNOWN_FAULTS))
    fault(record)
    return Item(_dump_line(record), expected_reason=reason)


@st.composite
def mutated_records(draw) -> Item:
    """A valid record with one field deleted, retyped, made huge or made tricky: outcome unknown."""
    record = dict(draw(valid_records()).valid)
    key = draw(st.sampled_from(sorted(record) + ["messages", "chosen", "inputs", "output"]))
    action = draw(st.sampled_from(["delete", "json", "tricky", "huge", "junk"]))
    if action == "delete":
        record.pop(key, None)
    else:
        record[key] = draw(
            {
                "json": json_values,
                "tricky": st.sampled_from(TRICKY_VALUES),
                "huge": st.integers(LIMIT - 5, LIMIT * 4).map(lambda n: "h" * n),
                "junk": adapter_junk,
            }[action]
        )
    return Item(_dump_line(record))


random_bytes = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b" "))
junk = st.one_of(
    random_bytes.map(Item),
    json_values.map(lambda v: Item(_dump_line(v))),
    adapter_junk.map(lambda v: Item(_dump_line(v))),
    st.sampled_from(TRICKY_LINES).map(Item),
    mutated_records(),
    known_faults(),
)


def _is_record_line(line: bytes) -> bool:
    """The reader skips blank lines (not records); the file's first line may start with a BOM."""
    return bool(line.decode("utf-8", "surrogateescape").lstrip("\ufeff").strip())


def _with_ids(items: list[Item]) -> list[Item]:
    """Valid records get unique ids (junk never has these), and their line."""
    for n, item in enumerate(items):
        if item.valid is not None:
            item.valid = {**item.valid, "id": f"valid-{n}"}
            item.line = _dump_line(item.valid)
    return items


@st.composite
def dumps(draw) -> dict[str, list[Item]]:
    """1–3 dump files of mixed valid and junk lines."""
    items = _with_ids(
        [
            i
            for i in draw(st.lists(valid_records() | junk, min_size=1, max_size=20))
            if i.valid is not None or _is_record_line(i.line)
        ]
    )
    names = draw(
        st.lists(st.sampled_from(["a.jsonl", "b.jsonl.gz", "c.ndjson", "d.jsonl"]), min_size=1, max_size=3, unique=True)
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), min_size=len(names) - 1, max_size=len(names) - 1)))
    bounds = [0, *cuts, len(items)]
    return {name: items[bounds[k] : bounds[k + 1]] for k, name in enumerate(names)}


# --------------------------------------------------------------------------- helpers


def write(folder: Path, files: dict[str, bytes], compress: bool = True) -> None:
    for name, data in files.items():
        path = folder / name
        path.write_bytes(gzip.compress(data, mtime=0) if compress and name.endswith(".gz") else data)
        os.utime(path, (WRITTEN.timestamp(), WRITTEN.timestamp()))


def jsonl_bytes(items: list[Item]) -> bytes:
    return b"".join(item.line + b"\n" for item in items)


def ingest_folder(folder: Path, reverse: bool = False) -> IngestResult:
    found = list_dumps(str(folder))
    return ingest(list(reversed(found)) if reverse else found, OPTIONS)


def check_accounting(result: IngestResult, n_records: int) -> None:
    """Records in = kept + quarantined with a reason, in total and per week, and each week's
    summary (what the asset reports) can be computed."""
    total = result.summary()
    assert total["records_in"] == n_records
    assert result.account().balanced, result.account().summary()
    weekly = []
    for week in sorted(result.weeks()):
        part = result.for_week(week)  # what raw_feedback reports for the week
        weekly.append(part.summary())
        account = part.account()
        assert account.balanced, (week, account.summary())
    for key in ("records_in", "records_kept", "records_quarantined", "records_skipped", "rows_out"):
        assert sum(s[key] for s in weekly) == total[key], key


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if v is None or v is pd.NaT or (isinstance(v, float) and v != v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def check_contract(result: IngestResult) -> None:
    """The frames every later asset relies on: columns, dtypes, and the contract's row rules."""
    for frame, dtypes in ((result.rows, ROW_DTYPES), (result.quarantine, QUARANTINE_DTYPES)):
        assert list(frame.columns) == list(dtypes)
        for col, dtype in dtypes.items():
            assert frame[col].dtype == EMPTY_DTYPES[dtype], col
    rows, q = _records(result.rows), _records(result.quarantine)
    latest = pd.Timestamp(WRITTEN) + FUTURE_TOLERANCE
    for r in rows:
        assert all(
            r[k] is not None
            for k in (
                "row_id",
                "record_id",
                "week",
                "timestamp",
                "prompt",
                "completion",
                "signal",
                "source",
                "dump",
                "line",
            )
        ), r
        for text in (r["prompt"], r["completion"]):
            assert text.strip() and len(text) <= LIMIT
            text.encode("utf-8")  # no lone surrogate reaches a frame: Parquet could not write it
        assert r["signal"] in SIGNALS and r["source"] == "production" and isinstance(r["label"], bool)
        assert r["week"] == CAL.week_of(r["timestamp"]) >= CAL.first_week and r["timestamp"] <= latest
    assert len({r["row_id"] for r in rows}) == len(rows)
    for e in q:
        assert e["reason"] in REASONS and e["detail"].strip() and e["week"] in result.weeks(), e
        assert len(e["raw"] or "") <= RAW_PREVIEW_CHARS + 1
        (e["raw"] or "").encode("utf-8"), e["detail"].encode("utf-8")
    # What the IO manager does with them.
    result.rows.to_parquet(io.BytesIO(), index=False)
    result.quarantine.to_parquet(io.BytesIO(), index=False)


def check_every_record_once(result: IngestResult, files: dict[str, list[Item]]) -> None:
    """Each line is kept (as its rows), quarantined or skipped (a shape read as a response nobody
    rated), never two of them, never twice; valid records are kept with the rows the contract
    promises; junk with a known fault has its reason."""
    kept: dict[tuple, list[dict]] = {}
    for r in _records(result.rows):
        kept.setdefault((r["dump"], r["line"]), []).append(r)
    reasons = {(e["dump"], e["line"]): e["reason"] for e in _records(result.quarantine)}
    assert len(reasons) == len(result.quarantine)  # quarantined once
    skipped = result.ledger[result.ledger["fate"] == "skipped"]
    skipped = set(zip(skipped["dump"], skipped["line"], strict=True))
    every = {(name, n) for name, items in files.items() for n in range(1, len(items) + 1)}
    assert set(kept) | set(reasons) | skipped == every
    assert not set(kept) & set(reasons) and not skipped & (set(kept) | set(reasons))
    for name, items in files.items():
        for n, item in enumerate(items, start=1):
            if item.expected_reason is not None:
                assert reasons.get((name, n)) == item.expected_reason, (name, n, item.line[:200])
            if item.valid is None:
                continue
            assert (name, n) in kept, (name, n, reasons.get((name, n)), item.valid)
            rows, record = kept[name, n], item.valid
            assert {r["record_id"] for r in rows} == {record["id"]}
            assert all(r["timestamp"] == item.ts and r["prompt"] == item.prompt for r in rows)
            got = sorted((r["signal"], r["label"], r["completion"]) for r in rows)
            edit = record.get("edited_completion")
            if edit is not None and not is_trivial_edit(record["completion"], edit, MIN_EDIT):
                assert got == [("edit", True, edit), ("edit_original", False, record["completion"])]
            else:
                assert got == [("thumb", item.label, record["completion"])]


def check_home_weeks(result: IngestResult) -> None:
    """A quarantined record sits in the week of its timestamp; when that cannot be read, is before
    the first week or after its dump was written, in the earliest week of its dump's records."""
    latest = pd.Timestamp(WRITTEN) + FUTURE_TOLERANCE
    placed: dict[str, set[str]] = {}
    for r in _records(result.rows):
        placed.setdefault(r["dump"], set()).add(r["week"])
    for r in _records(result.ledger[result.ledger["fate"] == "skipped"]):  # responses nobody rated
        placed.setdefault(r["dump"], set()).add(r["week"])
    homeless = []
    for e in _records(result.quarantine):
        ts = e["timestamp"]
        if (
            ts is not None
            and CAL.week_of(ts) >= CAL.first_week
            and ts <= latest
            and e["reason"] != Reason.FUTURE_TIMESTAMP
        ):
            assert e["week"] == CAL.week_of(ts), e
            placed.setdefault(e["dump"], set()).add(e["week"])
        else:
            homeless.append(e)
    for e in homeless:
        home = min(placed[e["dump"]]) if placed.get(e["dump"]) else CAL.week_of(pd.Timestamp(WRITTEN))
        assert e["week"] == home, (e, home)


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(dumps())
def test_mixed_jsonl_dumps_every_record_accounted_for_and_valid_ones_kept(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, {name: jsonl_bytes(items) for name, items in files.items()})
        result = ingest_folder(folder)  # never raises: a bad row never fails the week
    check_accounting(result, sum(map(len, files.values())))
    check_every_record_once(result, files)
    check_contract(result)
    check_home_weeks(result)


@settings(PROPERTY, max_examples=20)
@given(dumps())
def test_ingest_is_deterministic(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, {name: jsonl_bytes(items) for name, items in files.items()})
        first = ingest_folder(folder)
        again = ingest_folder(folder, reverse=True)  # listing order does not matter either
    pd.testing.assert_frame_equal(first.rows, again.rows)
    pd.testing.assert_frame_equal(first.quarantine, again.quarantine)
    assert first.records_in == again.records_in and first.trivial_edits == again.trivial_edits


json_items = valid_records() | known_faults() | (json_values | adapter_junk).map(lambda v: Item(_dump_line(v)))


@settings(PROPERTY, max_examples=30)
@given(st.lists(json_items, max_size=20), st.booleans())
def test_json_array_dump_every_element_accounted_for(items, wrapped):
    # The same mixture as one JSON document: an array, or an export's {"data": [...]}.
    items = _with_ids(items)
    values = [json.loads(item.line.decode("utf-8", "surrogatepass")) for item in items]
    doc = {"data": values, "exported_at": "2026-07-01"} if wrapped else values
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, {"a.json": json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")})
        result = ingest_folder(folder)
    check_accounting(result, len(values))
    check_every_record_once(result, {"a.json": items})
    check_contract(result)


CSV_HEADER = ["id", "timestamp", "prompt", "completion", "label", "edited_completion", "user_id"]
csv_text = st.text(max_size=30)
csv_junk_row = st.lists(
    csv_text | st.sampled_from([str(v) for v in TRICKY_VALUES if not isinstance(v, (list, dict))]),
    min_size=1,
    max_size=9,
)
# Raw bytes rows: no quote or line break (they would change where rows end), maybe not UTF-8.
csv_bytes_row = st.binary(min_size=1, max_size=40).map(lambda b: bytes(c for c in b if c not in b'"\r\n'))


def _csv_line(cells: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(  # "\r\n": a bare "\r" in a text is quoted too
        ["true" if c is True else "false" if c is False else "" if c is None else str(c) for c in cells]
    )
    return buf.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def csv_items(draw) -> Item:
    kind = draw(st.sampled_from(["valid", "valid", "junk", "bytes"]))
    if kind == "valid":  # CSV cells are text: a plain prompt, "1" a label, "1751328000" epoch seconds
        item = draw(valid_records())
        if isinstance(item.valid["prompt"], list):
            item.valid["prompt"] = item.prompt = draw(texts)
        item.valid = {k: v for k, v in item.valid.items() if k in CSV_HEADER}
        return item
    if kind == "junk":
        return Item(_csv_line(draw(csv_junk_row)))
    return Item(draw(csv_bytes_row) + b"\n")


def _csv_is_record(line: bytes) -> bool:
    """The reader skips blank rows: they are not records."""
    cells = next(csv.reader(io.StringIO(line.decode("utf-8", "surrogateescape"), newline="")), [])
    return any(c.strip() for c in cells)


@settings(PROPERTY, max_examples=30)
@given(st.lists(csv_items(), max_size=20))
def test_csv_dump_every_row_accounted_for(items):
    for n, item in enumerate(items):
        if item.valid is not None:
            item.valid = {**item.valid, "id": f"valid-{n}"}
            item.line = _csv_line([item.valid.get(k) for k in CSV_HEADER])
    items = [item for item in items if _csv_is_record(item.line)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, {"a.csv": _csv_line(CSV_HEADER) + b"".join(item.line for item in items)})
        result = ingest_folder(folder)
    check_accounting(result, len(items))
    check_every_record_once(result, {"a.csv": items})
    check_contract(result)


@settings(PROPERTY, max_examples=40)
@given(st.lists(valid_records(), min_size=1, max_size=12), st.floats(0, 1))
def test_gzip_cut_anywhere_keeps_every_whole_record_before_the_cut(items, where):
    items = _with_ids(items)
    whole = gzip.compress(jsonl_bytes(items), mtime=0)
    cut = whole[: int(len(whole) * where)]
    # An independent oracle: what zlib itself gets out of the cut stream.
    recovered = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    complete = recovered.count(b"\n")
    tail = recovered[recovered.rfind(b"\n") + 1 :]
    tail_whole = complete < len(items) and tail == items[complete].line  # cut just before a newline
    kept = complete + int(tail_whole)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, {"cut.jsonl.gz": cut}, compress=False)
        result = ingest_folder(folder)
    assert list(result.rows["record_id"].drop_duplicates()) == [f"valid-{n}" for n in range(kept)]
    expected = [["cut.jsonl.gz", kept + 1, Reason.TRUNCATED_FILE]] if tail and not tail_whole else []
    assert result.quarantine[["dump", "line", "reason"]].values.tolist() == expected
    check_accounting(result, kept + len(expected))


# --------------------------------------------------------------------------- every tricky value, everywhere

# One record of each export shape the adapters read; every value in it gets replaced in turn.
TS = "2025-01-07T10:00:00Z"
SHAPES = [
    {
        "timestamp": TS,
        "prompt": "How?",
        "completion": "Like so.",
        "label": "up",
        "edited_completion": "Like this instead.",
        "user_id": "u",
        "metadata": {"k": "v"},
    },
    {
        "created": 1736244000,
        "model": "m",
        "user": "u",
        "feedback": "down",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        ],
    },
    {
        "timestamp": TS,
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
    },
    {
        "timestamp": TS,
        "traceId": "t",
        "input": {"messages": [{"role": "user", "content": "Q"}]},
        "output": {"role": "assistant", "content": "A"},
        "scores": [
            {"name": "user-feedback", "dataType": "CATEGORICAL", "stringValue": "thumbs_up"},
            {"name": "correction", "dataType": "CORRECTION", "stringValue": "A better A"},
        ],
    },
    {
        "run_id": "r",
        "start_time": TS,
        "inputs": {"question": "Q"},
        "outputs": {
            "generations": [[{"text": "", "message": {"lc": 1, "id": ["AIMessage"], "kwargs": {"content": "A"}}}]]
        },
        "extra": {"metadata": {"thread_id": "th", "user_id": "u"}},
        "feedback": [{"key": "thumbs", "score": 1, "correction": {"output": "A fixed"}}],
    },
]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path] if path else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        out += _paths(child, (*path, key))
    return out


def _replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def test_every_tricky_value_at_every_place_of_every_shape_is_accounted_for(tmp_path):
    # Deterministic regression cover for what the properties found: each tricky value at each
    # place of each export shape, the hostile lines, and records dated after their dump that
    # fail an earlier rule; among valid records that must all survive.
    items = [Item(line) for line in TRICKY_LINES]
    for shape in SHAPES:
        items += [Item(_dump_line(_replaced(shape, path, value))) for path in _paths(shape) for value in TRICKY_VALUES]
        items.append(
            Item(_dump_line({**shape, "timestamp": "3000-01-01T00:00:00Z", "messages": "nope", "inputs": None}))
        )
    items.append(Item(_dump_line({"timestamp": "3000-01-01T00:00:00Z", "what": "no adapter knows this"})))
    valid = [
        Item(
            b"",
            valid={
                "id": f"valid-{n}",
                "timestamp": TS,
                "prompt": f"Question {n}?",
                "completion": f"Answer {n}.",
                "label": n % 2 == 0,
            },
            label=n % 2 == 0,
            ts=pd.Timestamp(TS),
            prompt=f"Question {n}?",
        )
        for n in range(40)
    ]
    for item in valid:
        item.line = _dump_line(item.valid)
    step = len(items) // len(valid) + 1
    items = [x for k, item in enumerate(valid) for x in (item, *items[k * step : (k + 1) * step])]
    files = {"tricky.jsonl": items}
    write(tmp_path, {"tricky.jsonl": jsonl_bytes(items)})
    result = ingest_folder(tmp_path)
    check_accounting(result, len(items))
    check_every_record_once(result, files)
    check_contract(result)
    check_home_weeks(result)
    assert len(result.quarantine) > len(items) // 2  # the junk did not slip through as rows


# --------------------------------------------------------------------------- field rules


@settings(PROPERTY, max_examples=200)
@given(json_values | st.sampled_from(TRICKY_VALUES) | st.datetimes(timezones=st.none() | st.just(UTC)))
def test_parse_timestamp_gives_a_utc_time_or_a_contract_error(value):
    try:
        ts = parse_timestamp(value)
    except ContractError as exc:
        assert exc.reason in (Reason.BAD_TIMESTAMP, Reason.MISSING_TIMESTAMP)
        return
    assert str(ts.tz) == "UTC" and ts.unit == "us"
    assert parse_timestamp(value) == ts  # no clock involved: "now" is not a time


@settings(PROPERTY, max_examples=200)
@given(json_values | st.sampled_from(TRUE_LABELS + FALSE_LABELS + TRICKY_VALUES))
def test_normalise_label_gives_a_bool_or_a_contract_error(value):
    try:
        label = normalise_label(value)
    except ContractError as exc:
        assert exc.reason in (Reason.BAD_LABEL, Reason.MISSING_LABEL)
        return
    assert isinstance(label, bool)
    if any(value is v or (type(value) is type(v) and value == v) for v in TRUE_LABELS):
        assert label is True
    if any(value is v or (type(value) is type(v) and value == v) for v in FALSE_LABELS):
        assert label is False


@pytest.mark.parametrize("value", ["now", "today", " Now ", "TODAY"])
def test_relative_times_are_not_timestamps(value):
    # pandas reads "now" as the clock at parse time: a rerun would move the record's week.
    with pytest.raises(ContractError, match=Reason.BAD_TIMESTAMP):
        parse_timestamp(value)
