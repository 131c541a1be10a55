"""Bad input (DESIGN.md "Bad input"): every bad record goes to quarantine with its reason, the
run goes on, and records in = records kept + records quarantined, per week and in total. A file
that cannot be read at all fails with a message naming the file."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.ingest.contract import RAW_PREVIEW_CHARS, Reason
from kto_pipeline.ingest.dumps import DumpReadError, list_dumps, read_dump
from kto_pipeline.ingest.load import IngestOptions, IngestResult, ingest

WEEK = "2026-10-05"  # Monday
NEXT_WEEK = "2026-10-12"
CAL = WeekCalendar(start_date="2026-01-05", day_offset=1)


def good(rid: str, when: str = "2026-10-06T10:00:00Z", **extra) -> dict:
    return {
        "id": rid,
        "timestamp": when,
        "prompt": f"How do I do {rid}?",
        "completion": f"Like this: {rid}.",
        "label": "up",
        **extra,
    }


def line(record) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def jsonl(*lines: bytes) -> bytes:
    return b"".join(ln + b"\n" for ln in lines)


def run(tmp_path: Path, files: dict[str, bytes], **options) -> IngestResult:
    folder = tmp_path / "dumps"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    options.setdefault("calendar", CAL)
    result = ingest(list_dumps(str(folder)), IngestOptions(**options))
    assert_accounting(result)
    return result


def assert_accounting(result: IngestResult) -> None:
    total = result.summary()
    assert total["records_in"] == total["records_kept"] + total["records_quarantined"] + total["records_skipped"]
    weekly = [result.for_week(w).summary() for w in sorted(result.weeks())]
    for w in weekly:
        assert w["records_in"] == w["records_kept"] + w["records_quarantined"] + w["records_skipped"]
    for key in ("records_in", "records_kept", "records_quarantined", "records_skipped", "rows_out"):
        assert sum(w[key] for w in weekly) == total[key], key
    # every quarantined record sits in a week the result knows about
    assert set(result.quarantine["week"]) <= result.weeks()


def quarantined(result: IngestResult) -> list[tuple]:
    return [tuple(r) for r in result.quarantine[["dump", "line", "week", "reason"]].itertuples(index=False, name=None)]


def kept_ids(result: IngestResult) -> list[str]:
    return sorted(result.rows["record_id"].unique())


# --------------------------------------------------------------------------- malformed JSON


def test_malformed_json_line_is_quarantined_and_the_run_goes_on(tmp_path):
    data = jsonl(line(good("a")), b'{"timestamp": "2026-10-06T11:00:00Z", "prompt": oops}', line(good("b")))
    result = run(tmp_path, {"a.jsonl": data, "b.jsonl": jsonl(line(good("c")))})
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.MALFORMED_JSON)]
    assert result.quarantine.loc[0, "raw"] == '{"timestamp": "2026-10-06T11:00:00Z", "prompt": oops}'
    assert kept_ids(result) == ["a", "b", "c"]
    assert result.summary()["records_in"] == 4
    assert result.summary()["quarantined_by_reason"] == {Reason.MALFORMED_JSON: 1}


@pytest.mark.parametrize("value", [[1, 2, 3], "just a string", 42, None])
def test_json_line_that_is_not_an_object_is_malformed(tmp_path, value):
    result = run(tmp_path, {"a.jsonl": jsonl(line(good("a")), line(value), line(good("b")))})
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.MALFORMED_JSON)]
    assert "not an object" in result.quarantine.loc[0, "detail"]
    assert kept_ids(result) == ["a", "b"]


def test_record_no_adapter_recognises_is_unknown_format(tmp_path):
    result = run(tmp_path, {"a.jsonl": jsonl(line({"timestamp": "2026-10-06T10:00:00Z", "foo": 1}), line(good("a")))})
    assert quarantined(result) == [("a.jsonl", 1, WEEK, Reason.UNKNOWN_FORMAT)]


# --------------------------------------------------------------------------- missing fields


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("timestamp", ..., Reason.MISSING_TIMESTAMP),
        ("timestamp", None, Reason.MISSING_TIMESTAMP),
        ("timestamp", "  ", Reason.MISSING_TIMESTAMP),
        ("prompt", ..., Reason.MISSING_PROMPT),
        ("prompt", "   ", Reason.MISSING_PROMPT),
        ("prompt", [], Reason.MISSING_PROMPT),
        ("completion", ..., Reason.MISSING_COMPLETION),
        ("completion", "", Reason.MISSING_COMPLETION),
        ("label", ..., Reason.MISSING_LABEL),
        ("label", None, Reason.MISSING_LABEL),
    ],
)
def test_missing_field_has_its_own_reason(tmp_path, field, value, reason):
    bad = good("bad", when="2026-10-13T10:00:00Z")
    if value is ...:
        del bad[field]
    else:
        bad[field] = value
    result = run(tmp_path, {"a.jsonl": jsonl(line(good("a")), line(bad), line(good("b", "2026-10-14T10:00:00Z")))})
    # A record without a readable timestamp goes to the dump's home week; otherwise to its own.
    week = WEEK if field == "timestamp" else NEXT_WEEK
    assert quarantined(result) == [("a.jsonl", 2, week, reason)]
    assert kept_ids(result) == ["a", "b"]
    assert result.summary()["records_in"] == 3


def test_missing_fields_in_csv(tmp_path):
    text = (
        "id,timestamp,prompt,completion,label\n"
        "ok,2026-10-06T10:00:00Z,q,a,up\n"
        "no-ts,,q,a,up\n"
        "no-prompt,2026-10-06T10:00:00Z,,a,up\n"
        "no-completion,2026-10-06T10:00:00Z,q,,up\n"
        "no-label,2026-10-06T10:00:00Z,q,a,\n"
    )
    result = run(tmp_path, {"a.csv": text.encode()})
    assert result.quarantine[["line", "reason"]].values.tolist() == [
        [2, Reason.MISSING_TIMESTAMP],
        [3, Reason.MISSING_PROMPT],
        [4, Reason.MISSING_COMPLETION],
        [5, Reason.MISSING_LABEL],
    ]
    assert kept_ids(result) == ["ok"]


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("prompt", 42, Reason.BAD_PROMPT),
        ("prompt", {"nested": {"a": 1}, "b": 2}, Reason.BAD_PROMPT),
        ("prompt", ["not", "messages"], Reason.BAD_PROMPT),
        ("completion", 3.5, Reason.BAD_COMPLETION),
        ("label", {"thumb": "up"}, Reason.BAD_LABEL),
        ("label", 2, Reason.BAD_LABEL),
        ("label", "maybe", Reason.BAD_LABEL),
        ("label", [1], Reason.BAD_LABEL),
        ("user_id", {"id": 7}, Reason.BAD_FIELD),
        ("conversation_id", ["c1", "c2"], Reason.BAD_FIELD),
        ("model_version", True, Reason.BAD_FIELD),
        ("edited_completion", 17, Reason.BAD_EDIT),
        ("timestamp", True, Reason.BAD_TIMESTAMP),
        ("timestamp", {"t": 1}, Reason.BAD_TIMESTAMP),
    ],
)
def test_wrong_type_is_quarantined_with_its_reason(tmp_path, field, value, reason):
    bad = good("bad", **{field: value})
    result = run(tmp_path, {"a.jsonl": jsonl(line(good("a")), line(bad), line(good("b")))})
    assert quarantined(result) == [("a.jsonl", 2, WEEK, reason)]
    assert kept_ids(result) == ["a", "b"]


@pytest.mark.parametrize("value", ["last tuesday", "2026-13-45T99:00:00Z", float("inf"), 10**30])
def test_unparseable_timestamp(tmp_path, value):
    bad = good("bad")
    bad["timestamp"] = value
    result = run(
        tmp_path,
        {"a.jsonl": jsonl(line(good("a", "2026-10-13T10:00:00Z")), line(bad), line(good("b", "2026-10-06T10:00:00Z")))},
    )
    # Unreadable timestamp: placed in the dump's home week, the earliest readable week of that dump.
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.BAD_TIMESTAMP)]
    assert pd.isna(result.quarantine.loc[0, "timestamp"])
    assert kept_ids(result) == ["a", "b"]


# --------------------------------------------------------------------------- huge text


def test_text_over_configured_limit(tmp_path):
    records = [
        good("at-limit", completion="x" * 50),
        good("over", completion="x" * 51),
        good("prompt-over", prompt="p" * 51),
        good("chat-over", prompt=[{"role": "user", "content": "p" * 45}]),  # "user: " + 45 = 51
        good("edit-over", label="down", edited_completion="e" * 51),
    ]
    result = run(tmp_path, {"a.jsonl": jsonl(*map(line, records))}, max_text_chars=50)
    assert result.quarantine[["line", "reason"]].values.tolist() == [
        [2, Reason.TEXT_TOO_LONG],
        [3, Reason.TEXT_TOO_LONG],
        [4, Reason.TEXT_TOO_LONG],
        [5, Reason.TEXT_TOO_LONG],
    ]
    assert kept_ids(result) == ["at-limit"]


def test_megabyte_text_with_default_limit(tmp_path):
    huge = "All work and no play makes Jack a dull boy. " * 24_000  # ~1 MB
    assert len(huge) > 1_000_000
    result = run(tmp_path, {"a.jsonl": jsonl(line(good("a")), line(good("huge", completion=huge)), line(good("b")))})
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.TEXT_TOO_LONG)]
    assert "100000" in result.quarantine.loc[0, "detail"]
    # The quarantine keeps a capped preview, not the megabyte.
    assert len(result.quarantine.loc[0, "raw"]) == RAW_PREVIEW_CHARS + 1
    assert kept_ids(result) == ["a", "b"]


# --------------------------------------------------------------------------- bad UTF-8


def test_bad_utf8_in_jsonl(tmp_path):
    bad = line(good("bad")).replace(b"Like this", b"Like \xff\xfe this")
    result = run(
        tmp_path, {"a.jsonl": jsonl(line(good("a")), bad, line(good("b", completion="Ça marche très bien 👍")))}
    )
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.BAD_UTF8)]
    raw = result.quarantine.loc[0, "raw"]
    raw.encode("utf-8")  # the preview itself is valid text (the bad bytes are replaced)
    assert raw.startswith('{"id": "bad", "timestamp": "2026-10-06T10:00:00Z"') and raw.endswith(
        'this: bad.", "label": "up"}'
    )
    assert kept_ids(result) == ["a", "b"]
    assert result.rows.set_index("record_id").loc["b", "completion"] == "Ça marche très bien 👍"


def test_bad_utf8_in_csv(tmp_path):
    data = (
        b"id,timestamp,prompt,completion,label\n"
        b"a,2026-10-06T10:00:00Z,q,caf\xc3\xa9,up\n"
        b"bad,2026-10-06T10:00:00Z,q,caf\xe9 latin-1,up\n"
        b"b,2026-10-06T10:00:00Z,q,fine,down\n"
    )
    result = run(tmp_path, {"a.csv": data})
    assert quarantined(result) == [("a.csv", 2, WEEK, Reason.BAD_UTF8)]
    assert kept_ids(result) == ["a", "b"]
    assert result.rows.set_index("record_id").loc["a", "completion"] == "café"


def test_bad_utf8_in_csv_header(tmp_path):
    data = b"id,time\xffstamp,prompt,completion,label\nh1,2026-10-06T10:00:00Z,q,a,up\n"
    result = run(tmp_path, {"a.csv": data, "b.jsonl": jsonl(line(good("b")))})
    assert result.quarantine[["dump", "reason"]].values.tolist() == [["a.csv", Reason.BAD_UTF8]]


# --------------------------------------------------------------------------- empty and truncated files


def _empty_parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"timestamp": pa.array([], pa.string()), "prompt": pa.array([], pa.string())}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.jsonl", b""),
        ("blank.jsonl", b"\n\n  \n"),
        ("empty.json", b""),
        ("empty-array.json", b"[]"),
        ("empty.csv", b""),
        ("header-only.csv", b"id,timestamp,prompt,completion,label\n"),
        ("empty.jsonl.gz", gzip.compress(b"")),
        ("zero-rows.parquet", _empty_parquet()),
    ],
)
def test_empty_file_gives_no_rows_and_no_error(tmp_path, name, data):
    result = run(tmp_path, {name: data, "z.jsonl": jsonl(line(good("a")))})
    assert kept_ids(result) == ["a"]
    assert result.quarantine.empty
    assert result.summary()["records_in"] == 1


def test_truncated_jsonl_without_final_newline(tmp_path):
    data = jsonl(line(good("a")), line(good("b"))) + line(good("cut"))[:40]
    result = run(tmp_path, {"a.jsonl": data})
    assert quarantined(result) == [("a.jsonl", 3, WEEK, Reason.TRUNCATED_FILE)]
    assert kept_ids(result) == ["a", "b"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    data = jsonl(line(good("a"))) + line(good("b"))
    result = run(tmp_path, {"a.jsonl": data})
    assert result.quarantine.empty
    assert kept_ids(result) == ["a", "b"]


def test_malformed_line_in_the_middle_is_not_called_truncated(tmp_path):
    data = jsonl(line(good("a")), line(good("mid"))[:30], line(good("b")))
    result = run(tmp_path, {"a.jsonl": data})
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.MALFORMED_JSON)]


def test_gzip_cut_in_half(tmp_path):
    records = [good(f"r{i:02d}", completion=f"Answer number {i} with some padding text {i * 7919}.") for i in range(40)]
    whole = gzip.compress(jsonl(*map(line, records)))
    cut = whole[: len(whole) // 2]

    # What a reader can get out of the first half (an independent oracle).
    recovered = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut).decode()
    complete_lines = recovered.count("\n")
    assert 0 < complete_lines < len(records) and not recovered.endswith("\n")

    result = run(tmp_path, {"cut.jsonl.gz": cut, "other.jsonl": jsonl(line(good("other")))})
    assert kept_ids(result) == sorted([f"r{i:02d}" for i in range(complete_lines)] + ["other"])
    assert quarantined(result) == [("cut.jsonl.gz", complete_lines + 1, WEEK, Reason.TRUNCATED_FILE)]


def test_gzip_cut_at_a_line_boundary_keeps_every_line(tmp_path):
    # A gzip stream without its trailer: every line is whole, nothing is invented.
    records = [good(f"r{i}") for i in range(5)]
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    partial = comp.compress(jsonl(*map(line, records))) + comp.flush(zlib.Z_SYNC_FLUSH)
    result = run(tmp_path, {"a.jsonl.gz": partial})
    assert kept_ids(result) == [f"r{i}" for i in range(5)]
    assert result.quarantine.empty


def test_json_array_cut_short(tmp_path):
    def dump(prefix: str) -> list[dict]:
        return [good(f"{prefix}-a"), good(f"{prefix}-b"), good(f"{prefix}-c")]

    mid = json.dumps(dump("mid"), indent=1)
    comma = json.dumps(dump("comma"))
    files = {
        "mid.json": mid[: mid.index('"id": "mid-c"') + 20].encode(),  # cut inside the third record
        "comma.json": comma[: comma.index('{"id": "comma-c"')].encode(),  # cut after "b},"
    }
    result = run(tmp_path, files)
    assert quarantined(result) == [
        ("comma.json", 3, WEEK, Reason.TRUNCATED_FILE),
        ("mid.json", 3, WEEK, Reason.TRUNCATED_FILE),
    ]
    assert kept_ids(result) == ["comma-a", "comma-b", "mid-a", "mid-b"]


def test_json_array_of_chat_records_cut_short_is_truncated(tmp_path):
    records = [good(r, prompt=[{"role": "user", "content": f"question {r}"}]) for r in ("a", "b", "c")]
    text = json.dumps(records)
    cut = text[: text.index('"completion": "Like this: c')]  # after c's prompt list, mid-record
    result = run(tmp_path, {"chat.json": cut.encode()})
    assert kept_ids(result) == ["a", "b"]
    assert quarantined(result) == [("chat.json", 3, WEEK, Reason.TRUNCATED_FILE)]


def test_json_object_cut_short_does_not_stop_the_run(tmp_path):
    text = json.dumps({"data": [good("a"), good("b")]})
    result = run(tmp_path, {"w.json": text[:-10].encode(), "z.jsonl": jsonl(line(good("z")))})
    assert result.quarantine[["dump", "line", "reason"]].values.tolist() == [["w.json", 2, Reason.TRUNCATED_FILE]]
    assert kept_ids(result) == ["a", "z"]


def test_wrapped_json_object_cut_short_keeps_records_before_the_cut(tmp_path):
    text = json.dumps({"data": [good("a"), good("b"), good("c")]})
    cut = text[: text.index('"id": "c"') + 20]
    result = run(tmp_path, {"w.json": cut.encode()})
    assert kept_ids(result) == ["a", "b"]
    assert quarantined(result) == [("w.json", 3, WEEK, Reason.TRUNCATED_FILE)]


def test_csv_row_with_wrong_number_of_fields(tmp_path):
    data = (
        b"id,timestamp,prompt,completion,label\n"
        b'a,2026-10-06T10:00:00Z,q,"a, with comma",up\n'
        b'"not enough fields",oops\n'
        b"extra,2026-10-06T10:00:00Z,q,a,up,surplus\n"
        b"b,2026-10-06T10:00:00Z,q,a,down\n"
    )
    result = run(tmp_path, {"a.csv": data})
    assert quarantined(result) == [("a.csv", 2, WEEK, Reason.MALFORMED_CSV), ("a.csv", 3, WEEK, Reason.MALFORMED_CSV)]
    assert result.quarantine.loc[0, "detail"] == "2 fields, header has 5"
    assert kept_ids(result) == ["a", "b"]
    assert result.rows.set_index("record_id").loc["a", "completion"] == "a, with comma"


def test_truncated_csv_last_row(tmp_path):
    data = b"id,timestamp,prompt,completion,label\na,2026-10-06T10:00:00Z,q,a,up\nb,2026-10-06T10:00:00Z,q"
    result = run(tmp_path, {"a.csv": data})
    assert quarantined(result) == [("a.csv", 2, WEEK, Reason.TRUNCATED_FILE)]
    assert kept_ids(result) == ["a"]


# --------------------------------------------------------------------------- weeks and duplicates


def test_record_before_start_date_goes_to_the_dumps_home_week(tmp_path):
    cal = WeekCalendar(start_date="2026-10-05", day_offset=1)
    data = jsonl(
        line(good("late", "2026-10-20T10:00:00Z")),
        line(good("old", "2026-09-01T10:00:00Z")),
        line(good("mid", "2026-10-13T10:00:00Z")),
    )
    result = run(tmp_path, {"a.jsonl": data}, calendar=cal)
    assert quarantined(result) == [("a.jsonl", 2, "2026-10-12", Reason.BEFORE_START_DATE)]
    assert "2026-10-05" in result.quarantine.loc[0, "detail"]
    assert result.quarantine.loc[0, "timestamp"] == pd.Timestamp("2026-09-01T10:00:00Z")
    assert kept_ids(result) == ["late", "mid"]
    assert result.weeks() == {"2026-10-12", "2026-10-19"}
    assert result.for_week("2026-10-12").summary()["records_in"] == 2


def test_record_before_default_calendar_start(tmp_path):
    result = run(
        tmp_path,
        {"a.jsonl": jsonl(line(good("old", "2024-03-01T09:00:00Z")), line(good("a")))},
        calendar=WeekCalendar(),
    )
    assert quarantined(result) == [("a.jsonl", 1, WEEK, Reason.BEFORE_START_DATE)]


def test_unreadable_timestamp_lands_in_the_dumps_home_week(tmp_path):
    data = jsonl(
        line(good("w3", "2026-10-21T10:00:00Z")),
        b'{"broken',  # malformed: no timestamp at all
        line(good("bad-ts", when="yesterday-ish")),
        line(good("w2", "2026-10-14T10:00:00Z")),
        line(good("no-ts", when=None)),
    )
    other = jsonl(line(good("w1", "2026-10-06T10:00:00Z")))  # another dump's weeks do not count
    result = run(tmp_path, {"a.jsonl": data, "b.jsonl": other})
    assert quarantined(result) == [
        ("a.jsonl", 2, "2026-10-12", Reason.MALFORMED_JSON),
        ("a.jsonl", 3, "2026-10-12", Reason.BAD_TIMESTAMP),
        ("a.jsonl", 5, "2026-10-12", Reason.MISSING_TIMESTAMP),
    ]
    assert [result.for_week(w).summary()["records_in"] for w in ("2026-10-05", "2026-10-12", "2026-10-19")] == [1, 4, 1]


def test_dump_without_any_readable_timestamp_uses_its_write_week(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    path = folder / "broken.jsonl"
    path.write_bytes(jsonl(b"{nope", line(good("x", when="soon"))))
    written = datetime(2026, 10, 22, 12, tzinfo=UTC).timestamp()
    os.utime(path, (written, written))
    result = ingest(list_dumps(str(folder)), IngestOptions(calendar=CAL))
    assert_accounting(result)
    assert quarantined(result) == [
        ("broken.jsonl", 1, "2026-10-19", Reason.MALFORMED_JSON),
        ("broken.jsonl", 2, "2026-10-19", Reason.BAD_TIMESTAMP),
    ]


def test_same_dump_under_two_names_is_quarantined_as_duplicates(tmp_path):
    data = jsonl(
        line(good("a")),
        line(good("b", label="down", edited_completion="A much better answer, written by the user.")),
        line({k: v for k, v in good("no-id").items() if k != "id"}),
    )
    result = run(tmp_path, {"2026-10-06_app.jsonl": data, "2026-10-06_app (copy).jsonl": data})
    # Names sort "..._app (copy)" < "..._app.jsonl": the copy is read first and kept.
    kept_dump = "2026-10-06_app (copy).jsonl"
    assert set(result.rows["dump"]) == {kept_dump}
    assert quarantined(result) == [("2026-10-06_app.jsonl", n, WEEK, Reason.DUPLICATE_RECORD) for n in (1, 2, 3)]
    assert result.quarantine["record_id"].tolist()[:2] == ["a", "b"]
    assert result.quarantine["record_id"].tolist()[2] == result.rows.loc[result.rows["line"] == 3, "record_id"].item()
    s = result.summary()
    assert (s["records_in"], s["records_kept"], s["records_quarantined"], s["rows_out"]) == (6, 3, 3, 4)
    assert result.rows["row_id"].is_unique

    # Reading again gives the same result.
    again = run(tmp_path, {})
    pd.testing.assert_frame_equal(again.rows, result.rows)
    pd.testing.assert_frame_equal(again.quarantine, result.quarantine)


def test_duplicate_inside_one_dump_keeps_the_first(tmp_path):
    result = run(
        tmp_path, {"a.jsonl": jsonl(line(good("a")), line(good("a", completion="different text")), line(good("b")))}
    )
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.DUPLICATE_RECORD)]
    assert result.rows.set_index("record_id").loc["a", "completion"] == "Like this: a."


# --------------------------------------------------------------------------- unreadable files


def test_corrupt_parquet_fails_naming_the_file(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(line(good("a"))))
    (folder / "2026-10-19_warehouse.parquet").write_bytes(b"PAR1 this is not really parquet at all")
    dumps = list_dumps(str(folder))
    with pytest.raises(DumpReadError, match=re.escape("2026-10-19_warehouse.parquet")):
        ingest(dumps, IngestOptions(calendar=CAL))
    with pytest.raises(DumpReadError, match=re.escape(str(folder / "2026-10-19_warehouse.parquet"))):
        list(read_dump(dumps[0]))


def test_gzip_that_is_not_gzip_fails_naming_the_file(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "plain.jsonl.gz").write_bytes(jsonl(line(good("a"))))
    with pytest.raises(DumpReadError, match=re.escape("plain.jsonl.gz")):
        ingest(list_dumps(str(folder)), IngestOptions(calendar=CAL))


def test_missing_location_fails_naming_it(tmp_path):
    where = str(tmp_path / "no-such-folder")
    with pytest.raises(DumpReadError, match=re.escape(where)):
        list_dumps(where)


def test_file_deleted_after_listing_fails_naming_it(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "gone.jsonl").write_bytes(jsonl(line(good("a"))))
    dumps = list_dumps(str(folder))
    (folder / "gone.jsonl").unlink()
    with pytest.raises(DumpReadError, match="gone.jsonl"):
        ingest(dumps, IngestOptions(calendar=CAL))


# --------------------------------------------------------------------------- everything at once


def test_bundled_bad_lines_all_land_in_quarantine_with_their_reasons(tmp_path):
    # One dump mixing every row-level fault; counts add up and good rows survive.
    week = "2026-10-05"
    ts = f"{week}T12:00:00Z"
    ok = {"prompt": "How do I reset my password?", "completion": "Use the reset link.", "label": "up"}
    lines = [
        line({**ok, "id": "fine", "timestamp": ts}),
        b'{"timestamp": "' + ts.encode() + b'", "prompt": "How do I export data?", "completion": "Use Rep',
        line({**ok, "timestamp": ts, "label": "maybe"}),
        line({"timestamp": ts, "completion": "No prompt here.", "label": "down"}),
        line({**ok, "timestamp": "last tuesday"}),
        line({**ok, "timestamp": ts, "prompt": 42}),
        line({**ok, "timestamp": ts, "completion": "x" * 120_000}),
        line({**ok, "timestamp": ts})[:-2] + b'\xff\xfe"}',
        line({**ok, "timestamp": "2024-03-01T09:00:00Z"}),
        b"[1, 2]",
    ]
    result = run(tmp_path, {"mixed.jsonl": jsonl(*lines)}, calendar=WeekCalendar())
    assert result.quarantine[["line", "reason"]].values.tolist() == [
        [2, Reason.MALFORMED_JSON],
        [3, Reason.BAD_LABEL],
        [4, Reason.MISSING_PROMPT],
        [5, Reason.BAD_TIMESTAMP],
        [6, Reason.BAD_PROMPT],
        [7, Reason.TEXT_TOO_LONG],
        [8, Reason.BAD_UTF8],
        [9, Reason.BEFORE_START_DATE],
        [10, Reason.MALFORMED_JSON],
    ]
    assert set(result.quarantine["week"]) == {week}
    assert kept_ids(result) == ["fine"]
    s = result.summary()
    assert (s["records_in"], s["records_kept"], s["records_quarantined"]) == (10, 1, 9)


# --------------------------------------------------------------------------- timestamps after the dump


def test_record_dated_after_its_dump_was_written_is_quarantined_in_the_home_week(tmp_path):
    data = jsonl(
        line(good("a")),
        line(good("future", when="3000-01-01T00:00:00Z")),
        line(good("soon", when="2026-10-09T12:00:00Z")),
    )
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(data)
    written = datetime(2026, 10, 8, 12, tzinfo=UTC).timestamp()  # the dump's upload time
    os.utime(folder / "a.jsonl", (written, written))
    result = ingest(list_dumps(str(folder)), IngestOptions(calendar=CAL))
    assert_accounting(result)
    # A day of clock skew is tolerated; the year 3000 is not, and would never get a partition.
    assert kept_ids(result) == ["a", "soon"]
    assert quarantined(result) == [("a.jsonl", 2, WEEK, Reason.FUTURE_TIMESTAMP)]
    assert "after its dump was written (2026-10-08 12:00 UTC)" in result.quarantine["detail"][0]
