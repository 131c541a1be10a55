"""Writes the bad-input corpus: `python tests/bad_input_corpus/make_corpus.py`.

The committed files under `dumps/` and `unreadable/` are this script's output (README.md says
what the pipeline must do with each). The megabyte texts are not committed: `write_generated`
writes them at test time. Deterministic: the same bytes on every run (gzip without a timestamp).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
W1, W2 = "2025-06-02", "2025-06-09"  # the corpus's two feedback weeks (Mondays)
# Every dump's modification time when the tests read the corpus: "dated after its dump was
# written" is measured against it, and a dump without one readable timestamp lands in its week.
WRITTEN = "2025-06-15T12:00:00Z"
MEGABYTE = 1_000_000

# Real-looking, distinct support traffic, so that deduplication keeps most of it.
QA = [
    (
        "How do I reset my password?",
        "Open Settings → Security and choose 'Reset password'; the link we email you works for 30 minutes.",
    ),
    (
        "Can I change the billing address on an invoice that was already issued?",
        "Issued invoices cannot change; edit Account → Billing → Address and the next invoice uses it.",
    ),
    (
        "Export my dashboard as CSV",
        "Use Reports → Export, pick CSV and the date range. Exports over 50 MB arrive by email.",
    ),
    (
        "How do I cancel my subscription?",
        "Go to Account → Plan → Cancel. You keep access until the end of the period you paid for.",
    ),
    (
        "Invite a colleague to my workspace",
        "Admins can invite people from Team → Invite and choose their role before sending.",
    ),
    (
        "How do I turn on two-factor authentication?",
        "Open Security → Two-factor, scan the QR code with an authenticator app and enter the 6-digit code.",
    ),
    ("I was charged twice this month", "Duplicate charges are refunded automatically within 5 business days."),
    (
        "Connect the Slack integration",
        "In Integrations → Slack click Connect, approve the workspace and pick a channel for alerts.",
    ),
    (
        "Why is my report empty?",
        "Reports only show data inside the selected date range; widen it or check the filters on the left.",
    ),
    ("What file types can I upload?", "PDF, DOCX, XLSX, PNG and JPEG up to 25 MB each."),
    (
        "How do I delete my account?",
        "Account → Privacy → Delete account removes your data within 30 days; download an export first.",
    ),
    ("Is there an API rate limit?", "Yes: 600 requests per minute per token; the response headers show what is left."),
    (
        "The mobile app keeps logging me out",
        "Update to the latest version and turn off battery optimisation for the app in Android settings.",
    ),
    (
        "Can I use single sign-on with Okta?",
        "SSO with Okta is on the Business plan: Admin → Security → SAML, then paste the metadata URL.",
    ),
    (
        "How do I rename a project?",
        "Open the project, click its name at the top and type the new one; links keep working.",
    ),
    (
        "Where do I find my API key?",
        "Developer settings → API keys. Keys are shown once, so copy it when you create it.",
    ),
    ("Can I restore a deleted file?", "Deleted files stay in Trash for 30 days; open Trash and choose Restore."),
    (
        "How do I change the language of the interface?",
        "Profile → Preferences → Language; the page reloads in the language you pick.",
    ),
    (
        "Set up a webhook for new orders",
        "Developer settings → Webhooks → Add, choose the order.created event and give your HTTPS endpoint.",
    ),
    (
        "Why did my payment fail?",
        "Banks decline for limits or 3-D Secure; try again and approve the prompt from your bank app.",
    ),
    ("How do I move a task to another board?", "Open the task, click ⋯ → Move and choose the board and column."),
    ("Is my data encrypted?", "Yes, with TLS 1.2+ in transit and AES-256 at rest."),
    (
        "Can I get an invoice with our VAT number?",
        "Add the VAT number under Billing → Tax details before the invoice date; it appears on the next one.",
    ),
    (
        "How do I schedule a report every Monday?",
        "Open the report, click Schedule, pick Weekly on Monday and the recipients.",
    ),
    (
        "The import stops at 80 percent",
        "Imports stop on a malformed row; download the error file from Imports to see which line.",
    ),
    (
        "Change the owner of the workspace",
        "The current owner can transfer ownership under Admin → Workspace → Transfer ownership.",
    ),
    ("How many seats are in the Team plan?", "The Team plan starts at 5 seats; you can add more one at a time."),
    ("Do you have a dark mode?", "Yes: Profile → Preferences → Theme → Dark, or follow the system setting."),
    (
        "How do I archive old projects?",
        "Select the projects in the list and choose Archive; archived projects are read-only.",
    ),
    (
        "My verification email never arrived",
        "Check spam, then use 'Resend verification' on the login page; it comes from no-reply@ our domain.",
    ),
    (
        "How can I see who edited a document?",
        "Open the document's History panel to see every edit with its author and time.",
    ),
    ("Can I pay annually?", "Yes, annual billing saves two months; switch under Account → Plan → Billing cycle."),
    (
        "Add a custom domain",
        "Settings → Domains → Add domain, then create the CNAME record we show at your DNS provider.",
    ),
    (
        "How do I stop email notifications?",
        "Profile → Notifications lets you turn off each email type, or all of them.",
    ),
    ("Where can I download the desktop app?", "From the Downloads page, for macOS 12+, Windows 10+ and Ubuntu 22.04+."),
    (
        "Can two people edit the same sheet at once?",
        "Yes, edits merge live and each person's cursor shows in their colour.",
    ),
]
LABELS = ["up", "down", True, False, "thumbs_up", "thumbs_down", 1, -1, "👍", "👎"]


def good(n: int, when: str, **extra) -> dict:
    """The n-th good record: a distinct question and answer, thumbs up or down."""
    prompt, completion = QA[n % len(QA)]
    return {
        "id": f"ok-{n:02d}",
        "timestamp": when,
        "prompt": prompt,
        "completion": completion,
        "label": LABELS[n % len(LABELS)],
        "user_id": f"u{n % 7}",
        **extra,
    }


def at(day: int, hour: int = 10, week: str = W1) -> str:
    """ISO time `day` days into `week` (0 = Monday)."""
    y, m, d = map(int, week.split("-"))
    return f"{y:04d}-{m:02d}-{d + day:02d}T{hour:02d}:00:00Z"


def line(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def jsonl(*lines: bytes) -> bytes:
    return b"".join(ln + b"\n" for ln in lines)


def csv_bytes(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


CSV_HEADER = ["id", "timestamp", "prompt", "completion", "label", "edited_completion", "user_id"]


def csv_row(rec: dict) -> list:
    return [
        "true" if v is True else "false" if v is False else "" if v is None else str(v)
        for v in (rec.get(k) for k in CSV_HEADER)
    ]


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def committed_files() -> dict[str, bytes]:
    """Relative path → bytes of every committed corpus file."""
    f: dict[str, bytes] = {}
    n = iter(range(1000))  # good records are numbered across the corpus: ids never collide

    def ok(when: str, **extra) -> bytes:
        return line(good(next(n), when, **extra))

    ts = at(1, 9)
    f["dumps/2025-06-03_malformed_json.jsonl"] = jsonl(
        ok(at(1)),
        b"",
        b'{"timestamp": "2025-06-03T09:00:00Z", "prompt": oops}',
        b'{"timestamp": "2025-06-03T09:01:00Z", "prompt": "a", "completion": "b", "label": "up",}',
        b"this line is not JSON at all",
        ok(at(1, 11)),
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b'{"timestamp": "2025-06-03T09:02:00Z", "label": ' + b"7" * 5000 + b"}",  # over Python's 4300-digit int limit
        b"[" * 3000 + b"]" * 3000,  # deeper than json can parse
        line(
            {
                "timestamp": ts,
                "prompt": "p",
                "completion": "c",
                "label": "up",
                "metadata": json.loads('{"a": ' * 150 + "1" + "}" * 150),
            }
        ),  # parses; deeper than any export
        b"   ",
        ok(at(1, 12)),
        ok(at(2)),
    )
    f["dumps/2025-06-03_wrong_types.jsonl"] = jsonl(
        ok(at(1, 13)),
        line({**good(900, ts), "id": "wt-01", "prompt": 42}),
        line({**good(901, ts), "id": "wt-02", "prompt": {"nested": {"a": 1}, "b": 2}}),
        line(
            {
                **good(902, ts),
                "id": "wt-03",
                "prompt": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
            }
        ),
        line({**good(903, ts), "id": "wt-04", "completion": 3.5}),
        line({**good(904, ts), "id": "wt-05", "completion": {"lc": 1, "id": [], "kwargs": {}}}),
        line({**good(905, ts), "id": "wt-06", "label": {"thumb": "up"}}),
        line({**good(906, ts), "id": "wt-07", "label": 2}),
        line({**good(907, ts), "id": "wt-08", "label": "maybe"}),
        line({**good(908, ts), "id": "wt-09", "user_id": {"id": 7}}),
        line({**good(909, ts), "id": "wt-10", "model_version": True}),
        line({**good(910, ts), "id": "wt-11", "edited_completion": 17}),
        line({**good(911, ts), "id": "wt-12", "timestamp": True}),
        line({**good(912, ts), "id": "wt-13", "timestamp": "last tuesday"}),
        line({**good(913, ts), "id": "wt-14", "timestamp": "now"}),
        line({"id": "wt-15", "created": 1748941200, "messages": "not a list", "feedback": "up"}),
        ok(at(2, 14)),
    )
    missing = {
        "id": None,
        "timestamp": ts,
        "prompt": "How do I export?",
        "completion": "Reports → Export.",
        "label": "up",
    }
    f["dumps/2025-06-04_missing_fields.jsonl"] = jsonl(
        ok(at(2, 9)),
        line({k: v for k, v in missing.items() if k not in ("id", "timestamp")}),
        line({**missing, "id": "mf-02", "timestamp": None}),
        line({k: v for k, v in {**missing, "id": "mf-03"}.items() if k != "prompt"}),
        line({**missing, "id": "mf-04", "prompt": "   "}),
        line({k: v for k, v in {**missing, "id": "mf-05"}.items() if k != "completion"}),
        line({**missing, "id": "mf-06", "completion": ""}),
        line({k: v for k, v in {**missing, "id": "mf-07"}.items() if k != "label"}),
        line({**missing, "id": "mf-08", "label": None}),
        b"{}",
        line({"id": "mf-10", "timestamp": ts, "question": "?", "answer": "!"}),
        line({"id": "mf-11", "created": 1748941200, "messages": [{"role": "user", "content": "Hi"}], "feedback": "up"}),
        ok(at(2, 10)),
    )
    g1, g2 = good(next(n), at(2, 11)), good(next(n), at(2, 12))
    f["dumps/2025-06-04_missing_fields.csv"] = csv_bytes(
        [
            CSV_HEADER,
            csv_row(g1),
            csv_row({**missing, "id": "mc-02", "timestamp": ""}),
            csv_row({**missing, "id": "mc-03", "prompt": ""}),
            csv_row({**missing, "id": "mc-04", "completion": ""}),
            csv_row({**missing, "id": "mc-05", "label": ""}),
            ["mc-06", ts, "too few fields"],
            [*csv_row({**missing, "id": "mc-07"}), "one field too many"],
            csv_row(g2),
        ]
    )
    ok_line = ok(at(3, 9))
    f["dumps/2025-06-05_bad_utf8.jsonl"] = jsonl(
        ok_line,
        line({**missing, "id": "bu-02", "completion": "Like XX this"}).replace(b"XX", b"\xff\xfe"),
        line({**missing, "id": "bu-03", "completion": "caf\u00e9 in latin-1"}).replace("é".encode(), b"\xe9"),
        line({**missing, "id": "bu-04", "prompt": "a lone continuation byte: X"}).replace(b"X", b"\x80"),
        line({**missing, "id": "bu-05", "prompt": "an overlong slash: X"}).replace(b"X", b"\xc0\xaf"),
        b'{"id": "bu-06", "timestamp": "2025-06-03T09:00:00Z", "prompt": "escaped lone surrogate \\ud800", "completion": "c", "label": "up"}',
        ok(at(3, 10)),
    )
    g3 = good(next(n), at(3, 11))
    f["dumps/2025-06-05_bad_utf8.csv"] = (
        csv_bytes([CSV_HEADER, csv_row(g3)])
        + (b"bc-02,2025-06-05T10:00:00Z,How do I pay?,caf\xe9 au lait,up,,u1\n")
        + csv_bytes([csv_row(good(next(n), at(3, 12)))])
    )

    # Empty files: no records, no quarantine, no error.
    f["dumps/2025-06-06_empty.jsonl"] = b""
    f["dumps/2025-06-06_empty.json"] = b""
    f["dumps/2025-06-06_empty.csv"] = b""
    f["dumps/2025-06-06_empty.jsonl.gz"] = gz(b"")
    f["dumps/2025-06-06_blank_lines.jsonl"] = b"\n\n   \n\t\n"
    f["dumps/2025-06-06_empty_array.json"] = b"[]"
    f["dumps/2025-06-06_header_only.csv"] = csv_bytes([CSV_HEADER])
    f["dumps/2025-06-06_zero_rows.parquet"] = parquet(pa.table({k: pa.array([], pa.string()) for k in CSV_HEADER}))

    # Files cut short: the whole records before the cut are kept, the cut one is quarantined.
    cut = line(good(next(n), at(4, 9)))
    f["dumps/2025-06-07_truncated.jsonl"] = jsonl(ok(at(4, 10)), ok(at(4, 11))) + cut[: len(cut) // 2]
    array = json.dumps(
        [good(next(n), at(4, 12)), good(next(n), at(4, 13)), good(next(n), at(4, 14))], ensure_ascii=False, indent=1
    )
    f["dumps/2025-06-07_truncated_array.json"] = array[: array.rindex('"completion"')].encode()
    wrapped = json.dumps(
        {"exported_at": "2025-06-07", "data": [good(next(n), at(4, 15)), good(next(n), at(4, 16))]}, ensure_ascii=False
    )
    f["dumps/2025-06-07_truncated_wrapped.json"] = wrapped[: wrapped.rindex('"prompt"')].encode()
    rows = [CSV_HEADER, csv_row(good(next(n), at(4, 17))), csv_row(good(next(n), at(4, 18)))]
    text = csv_bytes(rows)
    f["dumps/2025-06-07_truncated.csv"] = text[: len(text) - 40]
    whole = gz(jsonl(*(ok(at(5, 1 + i % 20)) for i in range(20))))
    f["dumps/2025-06-07_cut_in_half.jsonl.gz"] = whole[: len(whole) // 2]

    # The same dump twice: under two names, and once more gzipped; and a re-delivery of
    # records without ids in another format (the same record: the same content hash).
    app = jsonl(
        ok(at(6, 9)),
        ok(
            at(6, 10),
            label="down",
            edited_completion="Open Settings → Security → Sessions and sign out the other devices.",
        ),
        line({k: v for k, v in good(next(n), at(6, 11)).items() if k != "id"}),
    )
    f["dumps/2025-06-08_app.jsonl"] = app
    f["dumps/2025-06-08_app (copy).jsonl"] = app
    f["dumps/2025-06-08_app.jsonl.gz"] = gz(app)
    no_ids = [{k: v for k, v in good(next(n), at(6, 12 + i)).items() if k != "id"} for i in range(3)]
    f["dumps/2025-06-08_redelivered.csv"] = csv_bytes([CSV_HEADER] + [csv_row(r) for r in no_ids])
    f["dumps/2025-06-08_redelivered.jsonl"] = jsonl(*map(line, no_ids), ok(at(6, 16)))
    again = good(next(n), at(6, 17))
    f["dumps/2025-06-08_repeated_line.jsonl"] = jsonl(
        line(again), line({**again, "completion": "A different text, the same id."}), ok(at(6, 18))
    )

    # Timestamps: epoch forms, a day of clock skew allowed, later than the dump, before the start.
    f["dumps/2025-06-10_timestamps.jsonl"] = jsonl(
        ok(at(1, 9, W2)),
        line(good(next(n), 1749549600)),  # epoch seconds: 2025-06-10T10:00Z
        line(good(next(n), 1749636000000)),  # epoch milliseconds: 2025-06-11T10:00Z
        line(good(next(n), "2025-06-12T12:00:00+02:00")),
        line(good(next(n), "2025-06-12T09:30:00")),  # no zone: UTC
        line(good(next(n), "2025-06-15T20:00:00Z")),  # 8 h after the dump was written: clock skew, kept
        line({**good(950, "3000-01-01T00:00:00Z"), "id": "ts-07"}),
        line({**good(951, "2025-06-20T00:00:00Z"), "id": "ts-08"}),  # 3.5 days after the dump was written
        line(
            {"id": "ts-09", "timestamp": "3000-01-01T00:00:00Z", "what": "no adapter knows this"}
        ),  # future and broken
        line({**good(952, "2024-12-30T10:00:00Z"), "id": "ts-10"}),  # the week before the first week
        line({**good(953, 0), "id": "ts-11"}),  # epoch 0: 1970
        line({**good(954, "1999-12-31T23:59:59Z"), "id": "ts-12"}),
        line({**good(955, "2025-02-30T10:00:00Z"), "id": "ts-13"}),  # no such day
        ok(at(4, 9, W2)),
    )
    f["dumps/2025-06-10_not_an_array.json"] = b'"a JSON dump must be an array or an object"'

    # Readable exports with bad fields: Parquet with wrong types and nulls, adapters' shapes.
    f["dumps/2025-06-11_wrong_types.parquet"] = parquet(
        pa.table(
            {
                "id": ["pq-01", "pq-02", "pq-03", "pq-04", "pq-05"],
                "timestamp": [at(2, 9, W2), at(2, 10, W2), None, at(2, 11, W2), at(2, 12, W2)],
                "prompt": [QA[30][0], None, QA[31][0], QA[32][0], QA[33][0]],
                "completion": [QA[30][1], QA[2][1], QA[31][1], QA[32][1], QA[33][1]],
                "label": [1, 1, -1, 2, 0],
            }
        )
    )
    f["dumps/2025-06-11_exports.jsonl"] = jsonl(
        line(
            {
                "id": "ex-01",
                "start_time": at(2, 13, W2),
                "inputs": {"question": QA[34][0]},
                "outputs": {"answer": QA[34][1]},
                "extra": {"metadata": "not an object"},
                "feedback": [{"key": "thumbs", "score": 1}],
            }
        ),
        line(
            {
                "id": "ex-02",
                "timestamp": at(2, 14, W2),
                "traceId": "t2",
                "input": "Where is the changelog?",
                "output": "Help → What's new.",
                "scores": [],
            }
        ),
        line(
            {
                "id": "ex-03",
                "timestamp": at(2, 15, W2),
                "chosen": "the same text",
                "rejected": "the same text",
                "prompt": "Pick one",
            }
        ),
        line(
            {
                "id": "ex-04",
                "created": 1749722400,
                "messages": [{"role": "user", "content": QA[35][0]}, {"role": "assistant", "content": QA[35][1]}],
                "feedback": "thumbs_up",
            }
        ),
        line(
            {
                "id": "ex-05",
                "timestamp": at(2, 16, W2),
                "prompt": "Hi",
                "completion": {"type": ["ai"], "content": "Hello!"},
                "label": "up",
            }
        ),
    )

    # Files that cannot be read at all: each fails its run, naming the file.
    f["unreadable/corrupt.parquet"] = b"PAR1 this is not really a Parquet file PAR1"
    real = parquet(pa.table({k: [v] for k, v in zip(CSV_HEADER, csv_row(good(0, at(1))), strict=True)}))
    f["unreadable/truncated.parquet"] = real[: len(real) // 2]
    f["unreadable/not_gzip.jsonl.gz"] = jsonl(line(good(0, at(1))))
    return f


def generated_files() -> dict[str, bytes]:
    """Dumps too big to commit, written by the tests into their copy of the corpus."""
    huge = ("All work and no play makes Jack a dull boy. " * (MEGABYTE // 44 + 1))[:MEGABYTE]
    ts = at(3, 13)
    return {
        "dumps/2025-06-05_huge_text.jsonl": jsonl(
            line(good(500, at(3, 14))),
            line({**good(960, ts), "id": "ht-02", "completion": huge}),
            line({**good(961, ts), "id": "ht-03", "prompt": huge}),
            line({**good(962, ts), "id": "ht-04", "label": "down", "edited_completion": huge}),
            line(good(501, at(3, 15))),
        ),
        "dumps/2025-06-05_huge_text.csv": csv_bytes(
            [
                CSV_HEADER,
                csv_row(good(502, at(3, 16))),
                csv_row({**good(963, ts), "id": "hc-02", "completion": huge}),
                csv_row(good(503, at(3, 17))),
            ]
        ),
    }


def write(files: dict[str, bytes], root: Path) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_generated(root: Path) -> list[Path]:
    write(generated_files(), root)
    return [root / rel for rel in generated_files()]


if __name__ == "__main__":
    write(committed_files(), Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
