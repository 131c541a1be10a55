"""Input formats, fsspec locations, label/prompt normalisation, row ids, edits, adapters, weeks.

Everything here goes through the public entry points a user (and the `raw_feedback` asset)
relies on: `list_dumps` → `ingest` → the `rows` / `quarantine` frames and `summary()`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.devtools import sample_data
from kto_pipeline.ingest.adapters import adapt, detect_format
from kto_pipeline.ingest.contract import Reason
from kto_pipeline.ingest.dumps import list_dumps, read_dump
from kto_pipeline.ingest.load import IngestOptions, IngestResult, ingest

COMPARED = ["record_id", "signal", "prompt", "completion", "label", "timestamp"]


# --------------------------------------------------------------------------- helpers


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def csv_bytes(records: list[dict]) -> bytes:
    fields: list[str] = []
    for rec in records:
        fields += [k for k in rec if k not in fields]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: rec.get(k, "") for k in fields})
    return buf.getvalue().encode("utf-8")


def table_of(records: list[dict]) -> pa.Table:
    """All records' keys as columns (pyarrow's from_pylist only looks at the first record)."""
    keys: list[str] = []
    for rec in records:
        keys += [k for k in rec if k not in keys]
    return pa.Table.from_pylist([{k: rec.get(k) for k in keys} for rec in records])


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def run(location, **options) -> IngestResult:
    return ingest(list_dumps(str(location)), IngestOptions(**options))


def one_record(tmp_path: Path, record: dict, **options) -> IngestResult:
    folder = tmp_path / f"one-{uuid.uuid4().hex[:8]}"
    write(folder, "dump.jsonl", jsonl_bytes([record]))
    return run(folder, **options)


def compared(rows: pd.DataFrame) -> list[tuple]:
    frame = rows.sort_values(["record_id", "signal"])[COMPARED]
    return [tuple(r) for r in frame.itertuples(index=False, name=None)]


def assert_accounting(result: IngestResult) -> None:
    assert result.account().balanced, result.account().summary()
    for week in result.weeks():
        assert result.for_week(week).account().balanced, week


# Four production records; one carries a real edit, one text needs CSV quoting.
RECORDS = [
    {
        "id": "fb-1",
        "timestamp": "2026-10-06T09:15:00Z",
        "prompt": "How do I reset my password?",
        "completion": "Open Settings → Security and choose Reset password.",
        "label": "up",
        "user_id": "u1",
        "conversation_id": "c1",
        "model_version": "support-v3",
    },
    {
        "id": "fb-2",
        "timestamp": "2026-10-07T18:40:05Z",
        "prompt": "Can I export invoices as CSV?",
        "completion": "Exports are not supported.",
        "label": "down",
        "user_id": "u2",
        "conversation_id": "c2",
        "model_version": "support-v3",
    },
    {
        "id": "fb-3",
        "timestamp": "2026-10-08T07:00:00Z",
        "prompt": "How do I cancel my subscription?",
        "completion": "Call us to cancel.",
        "label": "down",
        "edited_completion": "Go to Account → Plan → Cancel. You keep access until the end of the paid period.",
        "user_id": "u3",
        "conversation_id": "c3",
        "model_version": "support-v3",
    },
    {
        "id": "fb-4",
        "timestamp": "2026-10-09T12:30:00Z",
        "prompt": "Wie ändere ich meine Rechnungsadresse? 🙂",
        "completion": 'Go to Account → Billing, then "Address".\nIt applies to new invoices at once.',
        "label": "up",
        "user_id": "u4",
        "conversation_id": "c4",
        "model_version": "support-v3",
    },
]

EXPECTED = [
    (
        "fb-1",
        "thumb",
        "How do I reset my password?",
        "Open Settings → Security and choose Reset password.",
        True,
        ts("2026-10-06T09:15:00Z"),
    ),
    ("fb-2", "thumb", "Can I export invoices as CSV?", "Exports are not supported.", False, ts("2026-10-07T18:40:05Z")),
    (
        "fb-3",
        "edit",
        "How do I cancel my subscription?",
        "Go to Account → Plan → Cancel. You keep access until the end of the paid period.",
        True,
        ts("2026-10-08T07:00:00Z"),
    ),
    (
        "fb-3",
        "edit_original",
        "How do I cancel my subscription?",
        "Call us to cancel.",
        False,
        ts("2026-10-08T07:00:00Z"),
    ),
    (
        "fb-4",
        "thumb",
        "Wie ändere ich meine Rechnungsadresse? 🙂",
        'Go to Account → Billing, then "Address".\nIt applies to new invoices at once.',
        True,
        ts("2026-10-09T12:30:00Z"),
    ),
]


def _parquet_typed(records: list[dict]) -> bytes:
    """Parquet as a warehouse writes it: real timestamps and boolean labels."""
    typed = []
    for rec in records:
        rec = dict(rec)
        rec["timestamp"] = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
        rec["label"] = rec["label"] == "up"
        typed.append(rec)
    table = table_of(typed)
    assert pa.types.is_timestamp(table.schema.field("timestamp").type)
    assert pa.types.is_boolean(table.schema.field("label").type)
    return parquet_bytes(table)


FORMAT_WRITERS = {
    "feedback.jsonl": lambda recs: jsonl_bytes(recs),
    "feedback.jsonl.gz": lambda recs: gzip.compress(jsonl_bytes(recs)),
    "feedback.ndjson": lambda recs: jsonl_bytes(recs),
    "feedback-array.json": lambda recs: json.dumps(recs, indent=2).encode(),
    "feedback-wrapped.json": lambda recs: json.dumps({"data": recs, "meta": {"page": 1}}).encode(),
    "feedback.csv": lambda recs: csv_bytes(recs),
    "feedback.csv.gz": lambda recs: gzip.compress(csv_bytes(recs)),
    "feedback.parquet": lambda recs: parquet_bytes(table_of(recs)),
    "feedback-typed.parquet": _parquet_typed,
}


# --------------------------------------------------------------------------- 1. formats


@pytest.mark.parametrize("name", list(FORMAT_WRITERS))
def test_every_format_gives_the_same_normalised_rows(tmp_path, name):
    write(tmp_path, name, FORMAT_WRITERS[name](RECORDS))
    result = run(tmp_path)

    assert compared(result.rows) == EXPECTED
    assert result.quarantine.empty
    assert sorted(result.rows["user_id"].unique()) == ["u1", "u2", "u3", "u4"]
    assert set(result.rows["model_version"]) == {"support-v3"}
    assert set(result.rows["dump"]) == {name}
    assert set(result.rows["week"]) == {"2026-10-05"}
    # `line` is the record's 1-based position in its dump, whatever the format.
    assert dict(zip(result.rows["record_id"], result.rows["line"])) == {"fb-1": 1, "fb-2": 2, "fb-3": 3, "fb-4": 4}
    assert result.summary()["records_in"] == 4


def test_all_formats_together_give_identical_rows_per_format(tmp_path):
    by_format = {}
    for name, writer in FORMAT_WRITERS.items():
        write(tmp_path / name.replace(".", "_"), name, writer(RECORDS))
        by_format[name] = compared(run(tmp_path / name.replace(".", "_")).rows)
    reference = by_format["feedback.jsonl"]
    assert {name: rows == reference for name, rows in by_format.items()} == {name: True for name in FORMAT_WRITERS}


def test_list_dumps_finds_dump_files_only_sorted_by_name(tmp_path):
    write(tmp_path, "b.csv.gz", gzip.compress(csv_bytes(RECORDS)))
    write(tmp_path, "a.jsonl", jsonl_bytes(RECORDS))
    write(tmp_path / "sub", "c.PARQUET", parquet_bytes(table_of(RECORDS)))
    write(tmp_path, "README.md", b"# not a dump\n")
    write(tmp_path, ".d.jsonl", jsonl_bytes(RECORDS))  # hidden / partial upload
    write(tmp_path / ".tmp", "e.jsonl", jsonl_bytes(RECORDS))

    dumps = list_dumps(str(tmp_path))

    assert [(d.name, d.fmt, d.gzipped) for d in dumps] == [
        ("a.jsonl", "jsonl", False),
        ("b.csv.gz", "csv", True),
        ("sub/c.PARQUET", "parquet", False),
    ]
    assert [d.size for d in dumps] == [(tmp_path / d.name).stat().st_size for d in dumps]


def test_dump_version_changes_when_content_changes(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl_bytes(RECORDS[:1]))
    before = list_dumps(str(tmp_path))[0].version
    path.write_bytes(jsonl_bytes(RECORDS))
    after = list_dumps(str(tmp_path))[0].version
    assert before != after


def test_csv_with_epoch_second_timestamps_is_read_like_jsonl(tmp_path):
    # CSV cells are text: "1791277200" must be read as epoch seconds, as a JSON number is.
    epoch = [dict(r, timestamp=int(ts(r["timestamp"]).timestamp())) for r in RECORDS]
    write(tmp_path / "j", "epoch.jsonl", jsonl_bytes(epoch))
    write(tmp_path / "c", "epoch.csv", csv_bytes(epoch))
    assert compared(run(tmp_path / "j").rows) == EXPECTED
    result = run(tmp_path / "c")
    assert result.quarantine["reason"].tolist() == []
    assert compared(result.rows) == EXPECTED


# --------------------------------------------------------------------------- 2. fsspec


@pytest.fixture
def memory_root():
    fs = fsspec.filesystem("memory")
    root = f"/kto-tests-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)
    assert not fs.exists(root)


def test_fsspec_memory_url_reads_like_a_local_folder(tmp_path, memory_root):
    fs, root = memory_root
    files = {
        "2026-10-05/app.jsonl": jsonl_bytes(RECORDS[:2]),
        "2026-10-05/support.csv.gz": gzip.compress(csv_bytes(RECORDS[2:3])),
        "2026-10-05/warehouse.parquet": _parquet_typed(RECORDS[3:]),
        "notes.txt": b"ignored",
    }
    for name, data in files.items():
        write(tmp_path / "local" / Path(name).parent, Path(name).name, data)
        fs.makedirs(f"{root}/dumps/{Path(name).parent}", exist_ok=True)
        with fs.open(f"{root}/dumps/{name}", "wb") as fh:
            fh.write(data)

    local = list_dumps(str(tmp_path / "local"))
    remote = list_dumps(f"memory://{root}/dumps")

    listing = [(d.name, d.fmt, d.gzipped, d.size) for d in local]
    assert listing == [
        ("2026-10-05/app.jsonl", "jsonl", False, len(files["2026-10-05/app.jsonl"])),
        ("2026-10-05/support.csv.gz", "csv", True, len(files["2026-10-05/support.csv.gz"])),
        ("2026-10-05/warehouse.parquet", "parquet", False, len(files["2026-10-05/warehouse.parquet"])),
    ]
    assert [(d.name, d.fmt, d.gzipped, d.size) for d in remote] == listing
    assert all(d.path.startswith("memory://") for d in remote)

    for lo, re_ in zip(local, remote):
        assert [(r.line, r.value, r.reason) for r in read_dump(lo)] == [
            (r.line, r.value, r.reason) for r in read_dump(re_)
        ]

    local_rows = ingest(local).rows
    remote_rows = ingest(remote).rows
    assert compared(remote_rows) == EXPECTED
    pd.testing.assert_frame_equal(local_rows, remote_rows)


# --------------------------------------------------------------------------- 3. labels


LABELS = [
    (True, True),
    (False, False),
    ("up", True),
    ("down", False),
    (1, True),
    (-1, False),
    (0, False),
    ("thumbs_up", True),
    ("thumbs_down", False),
    ("👍", True),
    ("👎", False),
    (" Up ", True),
    ("THUMBS_DOWN", False),
    (1.0, True),
    ("1", True),
    ("-1", False),
    ("0", False),
]


def test_label_spellings_normalise_to_bool(tmp_path):
    records = [
        {
            "id": f"l{i}",
            "timestamp": "2026-10-06T10:00:00Z",
            "prompt": f"question {i}",
            "completion": f"answer {i}",
            "label": value,
        }
        for i, (value, _) in enumerate(LABELS)
    ]
    write(tmp_path, "labels.jsonl", jsonl_bytes(records))
    result = run(tmp_path)
    assert result.quarantine.empty
    got = dict(zip(result.rows["record_id"], result.rows["label"]))
    assert got == {f"l{i}": expected for i, (_, expected) in enumerate(LABELS)}
    assert result.rows["label"].dtype == bool


def test_csv_label_strings_normalise_to_bool(tmp_path):
    text = (
        "id,timestamp,prompt,completion,label\n"
        "c1,2026-10-06T10:00:00Z,q1,a1,1\n"
        "c2,2026-10-06T10:00:00Z,q2,a2,-1\n"
        "c3,2026-10-06T10:00:00Z,q3,a3,0\n"
        "c4,2026-10-06T10:00:00Z,q4,a4,True\n"
        "c5,2026-10-06T10:00:00Z,q5,a5,False\n"
        "c6,2026-10-06T10:00:00Z,q6,a6,thumbs_down\n"
        "c7,2026-10-06T10:00:00Z,q7,a7,👍\n"
    )
    write(tmp_path, "labels.csv", text.encode())
    result = run(tmp_path)
    assert result.quarantine.empty
    assert dict(zip(result.rows["record_id"], result.rows["label"])) == {
        "c1": True,
        "c2": False,
        "c3": False,
        "c4": True,
        "c5": False,
        "c6": False,
        "c7": True,
    }


def test_csv_float_label_text_normalises_like_the_number(tmp_path):
    text = (
        "id,timestamp,prompt,completion,label\n"
        "f1,2026-10-06T10:00:00Z,q1,a1,1.0\n"
        "f2,2026-10-06T10:00:00Z,q2,a2,-1.0\n"
        "f3,2026-10-06T10:00:00Z,q3,a3,0.0\n"
    )
    write(tmp_path, "labels.csv", text.encode())
    result = run(tmp_path)
    assert result.quarantine["reason"].tolist() == []
    assert dict(zip(result.rows["record_id"], result.rows["label"])) == {"f1": True, "f2": False, "f3": False}


# --------------------------------------------------------------------------- 4. prompts


def test_text_and_chat_prompts(tmp_path):
    base = {"timestamp": "2026-10-06T10:00:00Z", "completion": "Use Reports → Export.", "label": "up"}
    records = [
        {**base, "id": "text", "prompt": "How do I export my data?"},
        {
            **base,
            "id": "chat",
            "prompt": [
                {"role": "system", "content": "You are Acme's support assistant."},
                {"role": "user", "content": "How do I export my data?"},
            ],
        },
        {
            **base,
            "id": "parts",
            "prompt": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "How do I "},
                        {"type": "input_text", "text": "export my data?"},
                    ],
                },
            ],
        },
        {
            **base,
            "id": "image",
            "prompt": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            ],
        },
    ]
    write(tmp_path, "prompts.jsonl", jsonl_bytes(records))
    result = run(tmp_path)
    rows = result.rows.set_index("record_id")

    assert rows.loc["text", "prompt"] == "How do I export my data?"
    assert pd.isna(rows.loc["text", "prompt_messages"])

    assert rows.loc["chat", "prompt"] == "system: You are Acme's support assistant.\nuser: How do I export my data?"
    assert json.loads(rows.loc["chat", "prompt_messages"]) == [
        {"role": "system", "content": "You are Acme's support assistant."},
        {"role": "user", "content": "How do I export my data?"},
    ]

    assert rows.loc["parts", "prompt"] == "user: How do I export my data?"
    assert json.loads(rows.loc["parts", "prompt_messages"]) == [{"role": "user", "content": "How do I export my data?"}]

    # A non-text content part cannot be trained on as text: quarantined, not crashed on.
    assert result.quarantine[["line", "reason"]].values.tolist() == [[4, Reason.BAD_PROMPT]]
    assert_accounting(result)


# --------------------------------------------------------------------------- 5. row ids


def test_same_record_in_two_folders_gets_the_same_row_ids(tmp_path):
    write(tmp_path / "a", "week.jsonl", jsonl_bytes(RECORDS))
    write(tmp_path / "b", "week.jsonl", jsonl_bytes(RECORDS))
    a, b = run(tmp_path / "a").rows, run(tmp_path / "b").rows
    assert a["row_id"].tolist() == b["row_id"].tolist()
    assert a["row_id"].is_unique  # the two rows of an edit have different ids
    assert len(a) == 5


def test_record_without_id_gets_a_stable_content_hash(tmp_path):
    rec = {
        "timestamp": "2026-10-06T10:00:00Z",
        "prompt": "How do I add a team member?",
        "completion": "Use Team → Invite.",
        "label": "up",
        "user_id": "u9",
    }
    write(tmp_path / "run1", "x.jsonl", jsonl_bytes([rec]))
    write(tmp_path / "run2", "renamed-copy.jsonl", jsonl_bytes([rec]))
    write(tmp_path / "changed", "x.jsonl", jsonl_bytes([dict(rec, completion="Send us their details.")]))

    first = run(tmp_path / "run1").rows
    again = run(tmp_path / "run1").rows
    copy = run(tmp_path / "run2").rows
    changed = run(tmp_path / "changed").rows

    rid = first.loc[0, "record_id"]
    assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)
    assert again.loc[0, "record_id"] == rid
    assert copy.loc[0, "record_id"] == rid
    assert copy.loc[0, "row_id"] == first.loc[0, "row_id"]
    assert changed.loc[0, "record_id"] != rid
    assert changed.loc[0, "row_id"] != first.loc[0, "row_id"]


def test_id_less_record_has_the_same_record_id_in_jsonl_and_csv(tmp_path):
    # A re-export of the same feedback in another format must be recognised as the same record.
    rec = {
        "timestamp": "2026-10-06T10:00:00Z",
        "prompt": "How do I add a team member?",
        "completion": "Use Team → Invite.",
        "label": True,
        "user_id": 7,
    }
    write(tmp_path / "j", "x.jsonl", jsonl_bytes([rec]))
    write(tmp_path / "c", "x.csv", csv_bytes([rec]))
    j, c = run(tmp_path / "j").rows, run(tmp_path / "c").rows
    assert (j.loc[0, "label"], j.loc[0, "user_id"]) == (c.loc[0, "label"], c.loc[0, "user_id"]) == (True, "7")
    assert j.loc[0, "record_id"] == c.loc[0, "record_id"]


# --------------------------------------------------------------------------- 6. edits


LONG_ANSWER = (
    "To reset your pasword, open Settings, choose Security, click Reset password and follow the link we email to you."
)


def test_edit_expansion_and_trivial_edits(tmp_path):
    base = {"timestamp": "2026-10-06T10:00:00Z", "prompt": "How do I reset my password?"}
    records = [
        {
            **base,
            "id": "real",
            "completion": "Call support.",
            "label": "down",
            "edited_completion": "Open Settings → Security → Reset password and follow the emailed link.",
        },
        {
            **base,
            "id": "spaces",
            "completion": LONG_ANSWER,
            "label": "up",
            "edited_completion": "  " + LONG_ANSWER.replace(" ", "   ", 3) + "\n",
        },
        {
            **base,
            "id": "typo",
            "completion": LONG_ANSWER,
            "label": "down",
            "edited_completion": LONG_ANSWER.replace("pasword", "password"),
        },
        {**base, "id": "plain", "completion": "Use the reset link.", "label": "up"},
    ]
    write(tmp_path, "edits.jsonl", jsonl_bytes(records))
    result = run(tmp_path)
    rows = result.rows.sort_values(["record_id", "signal"])

    assert rows[["record_id", "signal", "label", "completion"]].values.tolist() == [
        ["plain", "thumb", True, "Use the reset link."],
        ["real", "edit", True, "Open Settings → Security → Reset password and follow the emailed link."],
        ["real", "edit_original", False, "Call support."],
        ["spaces", "thumb", True, LONG_ANSWER],
        ["typo", "thumb", False, LONG_ANSWER],
    ]
    s = result.summary()
    assert s["trivial_edits_skipped"] == 2
    assert s["edits_expanded"] == 1
    assert (s["records_in"], s["records_kept"], s["rows_out"]) == (4, 4, 5)
    assert result.for_week("2026-10-05").summary()["trivial_edits_skipped"] == 2


def test_edit_threshold_is_configurable(tmp_path):
    original = "Billing addresses can be edited under Account, then Billing, then Address."
    edited = "Billing addresses can be changed under Account, then Billing, then Address."
    rec = {
        "id": "e1",
        "timestamp": "2026-10-06T10:00:00Z",
        "prompt": "Where is my billing address?",
        "completion": original,
        "label": "down",
        "edited_completion": edited,
    }
    write(tmp_path, "e.jsonl", jsonl_bytes([rec]))

    default = run(tmp_path)
    assert default.rows[["signal", "label", "completion"]].values.tolist() == [
        ["edit", True, edited],
        ["edit_original", False, original],
    ]
    assert default.summary()["trivial_edits_skipped"] == 0

    strict = run(tmp_path, min_edit_distance=0.2)
    assert strict.rows[["signal", "label", "completion"]].values.tolist() == [["thumb", False, original]]
    assert strict.summary()["trivial_edits_skipped"] == 1

    # And the other way: a typo fix counts once the threshold is low enough.
    typo = dict(rec, id="e2", completion=LONG_ANSWER, edited_completion=LONG_ANSWER.replace("pasword", "password"))
    write(tmp_path / "t", "t.jsonl", jsonl_bytes([typo]))
    assert run(tmp_path / "t").rows["signal"].tolist() == ["thumb"]
    assert run(tmp_path / "t", min_edit_distance=0.001).rows["signal"].tolist() == ["edit", "edit_original"]


def test_trivial_edit_without_label_is_missing_label(tmp_path):
    rec = {
        "id": "n",
        "timestamp": "2026-10-06T10:00:00Z",
        "prompt": "p",
        "completion": LONG_ANSWER,
        "edited_completion": LONG_ANSWER + "  ",
    }
    result = one_record(tmp_path, rec)
    assert result.rows.empty
    assert result.quarantine["reason"].tolist() == [Reason.MISSING_LABEL]
    # A real edit needs no thumb: the edit itself is the signal.
    real = one_record(tmp_path, dict(rec, edited_completion="Something else entirely, written by the user."))
    assert real.rows["signal"].tolist() == ["edit", "edit_original"]


def test_with_edits_as_rows_off_an_edited_record_counts_by_its_thumb_alone(tmp_path):
    rec = {
        "id": "e",
        "timestamp": "2026-10-06T10:00:00Z",
        "prompt": "Where is my billing address?",
        "completion": "Call support.",
        "label": "down",
        "edited_completion": "Account → Billing → Address.",
    }
    off = one_record(tmp_path, rec, edits_as_rows=False)
    assert off.rows[["signal", "label", "completion"]].values.tolist() == [["thumb", False, "Call support."]]
    assert off.summary()["trivial_edits_skipped"] == 0
    # Without a thumb there is nothing left to count: quarantined, saying why.
    bare = one_record(tmp_path, {k: v for k, v in rec.items() if k != "label"}, edits_as_rows=False)
    assert bare.rows.empty and bare.quarantine["reason"].tolist() == [Reason.MISSING_LABEL]
    assert "edits_as_rows is off" in bare.quarantine["detail"].iloc[0]


# --------------------------------------------------------------------------- 7. adapters


def test_trl_prompt_completion_label(tmp_path):
    rec = {
        "prompt": "How do I set up two-factor authentication?",
        "completion": "Open Security → Two-factor and scan the QR code.",
        "label": True,
        "timestamp": "2026-10-06T10:00:00Z",
    }
    assert detect_format(rec) == "contract"
    result = one_record(tmp_path, rec)
    assert compared(result.rows)[0][1:] == (
        "thumb",
        "How do I set up two-factor authentication?",
        "Open Security → Two-factor and scan the QR code.",
        True,
        ts("2026-10-06T10:00:00Z"),
    )
    assert one_record(tmp_path, rec, format="trl").rows["completion"].tolist() == [
        "Open Security → Two-factor and scan the QR code."
    ]


def test_trl_conversational_prompt_and_completion(tmp_path):
    rec = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is Slack supported?"}],
        "completion": [{"role": "assistant", "content": "Slack is not supported yet."}],
        "label": False,
        "timestamp": "2026-10-06T10:00:00Z",
    }
    assert detect_format(rec) == "contract"
    row = one_record(tmp_path, rec).rows.iloc[0]
    assert (row["prompt"], row["completion"], row["label"]) == (
        "system: Be brief.\nuser: Is Slack supported?",
        "Slack is not supported yet.",
        False,
    )
    assert json.loads(row["prompt_messages"]) == rec["prompt"]


def test_openai_chat_messages(tmp_path):
    created = int(datetime(2026, 10, 20, 9, 0, tzinfo=UTC).timestamp())
    rec = {
        "id": "chatcmpl-9a1",
        "created": created,
        "model": "gpt-4o-mini-2024-07-18",
        "user": "user-5",
        "messages": [
            {"role": "system", "content": "You are the support assistant of Acme Cloud."},
            {"role": "user", "content": [{"type": "text", "text": "Can I get a refund for a double charge?"}]},
            {"role": "assistant", "content": "We do not give refunds."},
        ],
        "feedback": "thumbs_down",
    }
    assert detect_format(rec) == "openai"
    result = one_record(tmp_path, rec)
    assert result.quarantine.empty
    row = result.rows.iloc[0]
    assert row["record_id"] == "chatcmpl-9a1"
    assert row["timestamp"] == ts("2026-10-20T09:00:00Z")
    assert row["week"] == "2026-10-19"
    assert (
        row["prompt"]
        == "system: You are the support assistant of Acme Cloud.\nuser: Can I get a refund for a double charge?"
    )
    assert json.loads(row["prompt_messages"]) == [
        {"role": "system", "content": "You are the support assistant of Acme Cloud."},
        {"role": "user", "content": "Can I get a refund for a double charge?"},
    ]
    assert (row["completion"], row["label"], row["signal"]) == ("We do not give refunds.", False, "thumb")
    assert (row["user_id"], row["model_version"]) == ("user-5", "gpt-4o-mini-2024-07-18")


def test_openai_multi_turn_uses_the_last_assistant_turn(tmp_path):
    rec = {
        "timestamp": "2026-10-06T10:00:00Z",
        "label": 1,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Cancel my plan."},
            {"role": "assistant", "content": "Go to Account → Plan → Cancel."},
        ],
    }
    row = one_record(tmp_path, rec).rows.iloc[0]
    assert row["completion"] == "Go to Account → Plan → Cancel."
    assert json.loads(row["prompt_messages"]) == rec["messages"][:3]
    assert row["label"] == True  # noqa: E712


def test_paired_text_gives_one_desirable_and_one_undesirable_row(tmp_path):
    rec = {
        "id": "pair-1",
        "timestamp": "2026-10-27T10:00:00Z",
        "prompt": "How do I export my data as CSV?",
        "chosen": "Use Reports → Export, pick CSV and the date range.",
        "rejected": "Exports are not supported.",
    }
    assert detect_format(rec) == "paired"
    result = one_record(tmp_path, rec)
    assert compared(result.rows) == [
        ("pair-1", "pair_chosen", rec["prompt"], rec["chosen"], True, ts("2026-10-27T10:00:00Z")),
        ("pair-1", "pair_rejected", rec["prompt"], rec["rejected"], False, ts("2026-10-27T10:00:00Z")),
    ]
    s = result.summary()
    assert (
        s["records_in"],
        s["records_kept"],
        s["rows_out"],
        s["pairs_expanded"],
        s["desirable"],
        s["undesirable"],
    ) == (1, 1, 2, 1, 1, 1)
    assert result.rows["row_id"].nunique() == 2


def test_paired_trl_implicit_prompt_conversational(tmp_path):
    user = {"role": "user", "content": "Is two-factor available on my plan?"}
    rec = {
        "timestamp": "2026-10-27T10:00:00Z",
        "chosen": [user, {"role": "assistant", "content": "Yes: open Security → Two-factor."}],
        "rejected": [user, {"role": "assistant", "content": "Two-factor is only for enterprise plans."}],
    }
    result = one_record(tmp_path, rec)
    rows = result.rows.sort_values("signal")
    assert rows[["signal", "label", "completion", "prompt"]].values.tolist() == [
        ["pair_chosen", True, "Yes: open Security → Two-factor.", "user: Is two-factor available on my plan?"],
        [
            "pair_rejected",
            False,
            "Two-factor is only for enterprise plans.",
            "user: Is two-factor available on my plan?",
        ],
    ]
    assert [json.loads(m) for m in rows["prompt_messages"]] == [[user], [user]]


LANGFUSE_TRACES = {
    "data": [
        {
            "id": "trace-7f3a",
            "timestamp": "2026-10-27T08:30:00.000Z",
            "name": "support-chat",
            "input": {
                "messages": [
                    {"role": "system", "content": "You are Acme's support assistant."},
                    {"role": "user", "content": "How do I cancel my subscription?"},
                ]
            },
            "output": {"role": "assistant", "content": "Call us to cancel."},
            "userId": "user-42",
            "sessionId": "sess-9",
            "release": "support-v3",
            "metadata": {"channel": "web"},
            "scores": [
                {"name": "latency-ok", "value": 1, "dataType": "NUMERIC"},
                {"name": "user-feedback", "value": 0, "dataType": "NUMERIC", "comment": "wrong"},
                {
                    "name": "correction",
                    "dataType": "CORRECTION",
                    "stringValue": "Go to Account → Plan → Cancel; you keep access until the period ends.",
                },
            ],
        },
        {
            "id": "trace-8b11",
            "timestamp": "2026-10-28T11:00:00Z",
            "name": "support-chat",
            "input": "How do I add a team member?",
            "output": "Admins invite people from Team → Invite.",
            "userId": "user-43",
            "sessionId": "sess-10",
            "version": "support-v4",
            "scores": [{"name": "user-feedback", "stringValue": "thumbs_up", "dataType": "CATEGORICAL"}],
        },
    ]
}


def test_langfuse_trace_export(tmp_path):
    assert detect_format(LANGFUSE_TRACES["data"][0]) == "langfuse"
    write(tmp_path, "langfuse.json", json.dumps(LANGFUSE_TRACES).encode())
    result = run(tmp_path)
    assert result.quarantine.empty
    rows = result.rows.sort_values(["record_id", "signal"]).reset_index(drop=True)
    assert rows[["record_id", "signal", "label", "completion", "prompt"]].values.tolist() == [
        [
            "trace-7f3a",
            "edit",
            True,
            "Go to Account → Plan → Cancel; you keep access until the period ends.",
            "system: You are Acme's support assistant.\nuser: How do I cancel my subscription?",
        ],
        [
            "trace-7f3a",
            "edit_original",
            False,
            "Call us to cancel.",
            "system: You are Acme's support assistant.\nuser: How do I cancel my subscription?",
        ],
        ["trace-8b11", "thumb", True, "Admins invite people from Team → Invite.", "How do I add a team member?"],
    ]
    assert rows[["user_id", "conversation_id", "model_version"]].values.tolist() == [
        ["user-42", "sess-9", "support-v3"],
        ["user-42", "sess-9", "support-v3"],
        ["user-43", "sess-10", "support-v4"],
    ]
    assert json.loads(rows.loc[0, "metadata"]) == {"channel": "web"}
    assert rows.loc[0, "timestamp"] == ts("2026-10-27T08:30:00Z")
    assert result.summary()["edits_expanded"] == 1


def test_langfuse_thumb_without_correction(tmp_path):
    trace = dict(LANGFUSE_TRACES["data"][0], scores=[{"name": "user-feedback", "value": 1, "dataType": "BOOLEAN"}])
    row = one_record(tmp_path, trace).rows
    assert row[["signal", "label", "completion"]].values.tolist() == [["thumb", True, "Call us to cancel."]]


LANGSMITH_RUN = {
    "id": "5f1c0b9e-1d2a-4c1e-9a55-0c6a1e2b3c4d",
    "name": "ChatOpenAI",
    "run_type": "llm",
    "start_time": "2026-10-28T14:05:00.123456",
    "end_time": "2026-10-28T14:05:02.000000",
    "inputs": {"question": "How do I connect the Slack integration?"},
    "outputs": {"answer": "Slack is not supported yet."},
    "extra": {
        "metadata": {
            "user_id": "u-17",
            "thread_id": "thread-3",
            "ls_model_name": "gpt-4o-mini",
            "ls_provider": "openai",
        }
    },
    "feedback": [
        {"key": "latency", "score": 0.9},
        {
            "key": "user_score",
            "score": 0,
            "created_at": "2026-10-28T14:06:00Z",
            "correction": {"output": "In Integrations → Slack click Connect and pick the alert channel."},
        },
    ],
}


def test_langsmith_run_with_feedback_list(tmp_path):
    assert detect_format(LANGSMITH_RUN) == "langsmith"
    result = one_record(tmp_path, LANGSMITH_RUN)
    assert result.quarantine.empty
    rows = result.rows.sort_values("signal").reset_index(drop=True)
    assert rows[["signal", "label", "completion"]].values.tolist() == [
        ["edit", True, "In Integrations → Slack click Connect and pick the alert channel."],
        ["edit_original", False, "Slack is not supported yet."],
    ]
    assert set(rows["prompt"]) == {"How do I connect the Slack integration?"}
    assert set(rows["record_id"]) == {LANGSMITH_RUN["id"]}
    assert rows.loc[0, ["user_id", "conversation_id", "model_version"]].tolist() == ["u-17", "thread-3", "gpt-4o-mini"]
    # The label's week is the feedback's: its time, not the run's.
    assert rows.loc[0, "timestamp"] == ts("2026-10-28T14:06:00Z")
    assert json.loads(rows.loc[0, "metadata"]) == LANGSMITH_RUN["extra"]["metadata"]


def test_langsmith_thumb_and_generations_output(tmp_path):
    run_ = dict(
        LANGSMITH_RUN,
        id="run-2",
        outputs={"generations": [[{"text": "Use Team → Invite."}]]},
        feedback=[{"key": "thumbs", "value": "up"}],
    )
    rows = one_record(tmp_path, run_).rows
    assert rows[["record_id", "signal", "label", "completion"]].values.tolist() == [
        ["run-2", "thumb", True, "Use Team → Invite."]
    ]


def test_langsmith_flat_feedback_row_joined_with_run(tmp_path):
    row_in = {
        "id": "fb-0001",
        "run_id": "run-77",
        "key": "user_score",
        "score": 1,
        "comment": "perfect",
        "created_at": "2026-10-29T09:00:00Z",
        "start_time": "2026-10-28T22:00:00Z",
        "inputs": {"question": "How do I export my data?"},
        "outputs": {"answer": "Use Reports → Export."},
        "extra": {"metadata": {"user_id": "u-3", "session_id": "s-8", "model_version": "support-v3"}},
    }
    assert detect_format(row_in) == "langsmith"
    rows = one_record(tmp_path, row_in).rows
    assert rows[
        ["record_id", "signal", "label", "prompt", "completion", "user_id", "conversation_id", "model_version"]
    ].values.tolist() == [
        ["run-77", "thumb", True, "How do I export my data?", "Use Reports → Export.", "u-3", "s-8", "support-v3"],
    ]
    assert rows.loc[0, "timestamp"] == ts("2026-10-29T09:00:00Z")  # the feedback's time, not the run's

    # Feedback without a time is dated by its run.
    undated = {k: v for k, v in row_in.items() if k != "created_at"}
    assert one_record(tmp_path, undated).rows.loc[0, "timestamp"] == ts("2026-10-28T22:00:00Z")


def test_format_auto_detection_and_adapt():
    cases = {
        "contract": {"prompt": "p", "completion": "c", "label": 1, "timestamp": "2026-10-06"},
        "openai": {"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]},
        "paired": {"prompt": "p", "chosen": "a", "rejected": "b"},
        "langfuse": LANGFUSE_TRACES["data"][0],
        "langsmith": LANGSMITH_RUN,
    }
    assert {name: detect_format(rec) for name, rec in cases.items()} == {name: name for name in cases}
    assert adapt(cases["openai"]).completion == "c"
    assert adapt(cases["paired"]).kind == "pair"
    with pytest.raises(ValueError, match="unknown feedback format"):
        IngestOptions(format="nonsense")


def test_forced_format_quarantines_records_it_does_not_fit(tmp_path):
    folder = write(tmp_path / "f", "contract.jsonl", jsonl_bytes(RECORDS)).parent
    result = run(folder, format="openai")
    assert result.rows.empty
    assert result.quarantine["reason"].tolist() == [Reason.BAD_PROMPT] * 4
    assert result.quarantine["line"].tolist() == [1, 2, 3, 4]
    assert set(result.quarantine["week"]) == {"2026-10-05"}
    assert_accounting(result)
    # The right forced format reads the same file.
    assert compared(run(folder, format="contract").rows) == EXPECTED


# --------------------------------------------------------------------------- 8. weeks


def test_dump_spanning_two_weeks_is_split_by_timestamp(tmp_path):
    times = {
        "sun-20h": "2026-10-11T20:00:00Z",
        "sun-late": "2026-10-11T23:59:59.999Z",
        "mon-midnight": "2026-10-12T00:00:00Z",
        "sun-in-chicago": "2026-10-11T22:30:00-05:00",  # Monday 03:30 UTC
        "mon-noon": "2026-10-12T12:00:00Z",
        "tue": "2026-10-13T08:00:00Z",
        "sun-epoch": int(datetime(2026, 10, 11, 21, tzinfo=UTC).timestamp()),
        "tue-epoch-ms": int(datetime(2026, 10, 13, 9, tzinfo=UTC).timestamp() * 1000),
    }
    records = [
        {"id": rid, "timestamp": t, "prompt": f"question {rid}", "completion": f"answer {rid}", "label": "up"}
        for rid, t in times.items()
    ]
    records.append(
        {"id": "bad-label", "timestamp": "2026-10-13T10:00:00Z", "prompt": "q", "completion": "a", "label": "meh"}
    )
    records.append(
        {"id": "bad-label-sun", "timestamp": "2026-10-11T21:30:00Z", "prompt": "q", "completion": "a", "label": "meh"}
    )
    write(tmp_path, "2026-10-11_spanning.jsonl", jsonl_bytes(records))

    result = run(tmp_path, calendar=WeekCalendar(start_date="2026-01-05", day_offset=1))
    assert result.weeks() == {"2026-10-05", "2026-10-12"}

    first, second = result.for_week("2026-10-05"), result.for_week("2026-10-12")
    assert sorted(first.rows["record_id"]) == ["sun-20h", "sun-epoch", "sun-late"]
    assert sorted(second.rows["record_id"]) == ["mon-midnight", "mon-noon", "sun-in-chicago", "tue", "tue-epoch-ms"]
    assert first.quarantine["line"].tolist() == [10]
    assert second.quarantine["line"].tolist() == [9]
    assert set(first.rows["week"]) == {"2026-10-05"} and set(second.rows["week"]) == {"2026-10-12"}

    total = result.summary()
    weekly = [first.summary(), second.summary()]
    for key in ("records_in", "records_kept", "records_quarantined", "rows_out", "desirable", "undesirable"):
        assert sum(w[key] for w in weekly) == total[key], key
    assert (total["records_in"], total["records_kept"], total["records_quarantined"]) == (10, 8, 2)
    assert [w["records_in"] for w in weekly] == [4, 6]
    assert_accounting(result)

    # A week with nothing in it is empty, not an error.
    empty = result.for_week("2026-10-19").summary()
    assert (empty["records_in"], empty["rows_out"], empty["records_quarantined"]) == (0, 0, 0)


def test_week_calendar_matches_monday_start_weeks():
    cal = WeekCalendar(start_date="2026-01-05", day_offset=1)
    assert cal.week_of(ts("2026-10-11T23:59:59Z")) == "2026-10-05"
    assert cal.week_of(ts("2026-10-12T00:00:00Z")) == "2026-10-12"
    assert cal.window("2026-10-12") == (ts("2026-10-12T00:00:00Z"), ts("2026-10-19T00:00:00Z"))
    with pytest.raises(ValueError):
        WeekCalendar(start_date="2026-01-06", day_offset=1)  # a Tuesday


# --------------------------------------------------------------------------- 9. sample


def test_bundled_sample_is_reproducible(tmp_path):
    written = sample_data.build_sample(tmp_path)
    shipped = sorted(p.name for p in sample_data.SAMPLE_DIR.iterdir() if p.is_file())
    assert sorted(p.name for p in written) == shipped
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    differing = [
        name for name in shipped if (tmp_path / name).read_bytes() != (sample_data.SAMPLE_DIR / name).read_bytes()
    ]
    assert differing == []


def test_langsmith_langchain_chat_model_run(tmp_path):
    """A chat-model run as LangSmith logs it: a batch of serialised LangChain messages in, a
    generation holding an AIMessage out."""

    def lc(kind: str, content: str) -> dict:
        return {
            "lc": 1,
            "type": "constructor",
            "id": ["langchain", "schema", "messages", kind],
            "kwargs": {"content": content, "type": "x"},
        }

    record = {
        "id": "run-7",
        "start_time": "2026-10-06T10:00:00Z",
        "inputs": {"messages": [[lc("SystemMessage", "Be brief."), lc("HumanMessage", "What is 2+2?")]]},
        "outputs": {"generations": [[{"text": "", "message": lc("AIMessage", "4")}]]},
        "feedback": [{"key": "thumbs", "score": 0, "correction": "Four."}],
    }
    result = one_record(tmp_path, record)
    rows = result.rows.set_index("signal")
    assert json.loads(rows.loc["edit", "prompt_messages"]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert rows.loc["edit", "completion"] == "Four." and bool(rows.loc["edit", "label"])
    assert rows.loc["edit_original", "completion"] == "4" and not bool(rows.loc["edit_original", "label"])
