"""The bundled sample of feedback dumps: four weeks of a support assistant's traffic.

Deterministic (fixed seed, gzip headers without timestamps), so regenerating gives the same
bytes as the copy shipped in `kto_pipeline/devtools/sample_dumps/`. It has every input format and
adapter, PII in prompts, completions and edits, exact and near duplicates, edits (some
trivial), a dump that spans two weeks, and bad rows of every kind the contract quarantines.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

SAMPLE_DIR = Path(__file__).parent / "sample_dumps"
WEEKS = ("2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26")

_NAMES = ["Maria Lopez", "James O'Neil", "Aiko Tanaka", "Priya Raman", "Lars Eriksen", "Chen Wei"]
_TOPICS = [
    (
        "reset my password",
        "Open Settings → Security, choose 'Reset password' and follow the link we email you.",
        "Go to the login page and click 'Forgot password'; the reset link expires after 30 minutes.",
    ),
    (
        "change the billing address on my invoice",
        "Billing addresses can be edited under Account → Billing → Address; new invoices use it at once.",
        "You cannot change it.",
    ),
    (
        "export my data as CSV",
        "Use Reports → Export, pick CSV and the date range; large exports arrive by email.",
        "Exports are not supported.",
    ),
    (
        "cancel my subscription",
        "Go to Account → Plan → Cancel. You keep access until the end of the paid period.",
        "Call us to cancel.",
    ),
    (
        "add a team member",
        "Admins can invite people from Team → Invite; they join with the role you pick.",
        "Send us their details and we will add them.",
    ),
    (
        "set up two-factor authentication",
        "Open Security → Two-factor, scan the QR code with an authenticator app and enter the 6-digit code.",
        "Two-factor is only for enterprise plans.",
    ),
    (
        "get a refund for a double charge",
        "Refunds for duplicate charges are automatic within 5 business days; reply with the charge date if not.",
        "We do not give refunds.",
    ),
    (
        "connect the Slack integration",
        "In Integrations → Slack click Connect, approve the workspace and pick the channel for alerts.",
        "Slack is not supported yet.",
    ),
]


def _pii(rng: random.Random) -> tuple[str, str]:
    """A sentence carrying PII, and the kind of PII it carries."""
    name = rng.choice(_NAMES)
    first = name.split()[0].lower()
    kinds = [
        (f"My email is {first}.{rng.randint(10, 99)}@example.com.", "email"),
        (f"Call me at +1 415-555-{rng.randint(1000, 9999)}.", "phone"),
        (f"I'm {name}, card 4111 1111 1111 1111 was charged.", "credit_card"),
        ("My IBAN is DE89 3704 0044 0532 0130 00.", "iban"),
        (f"The request came from 192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}.", "ip"),
        (f"My SSN is 536-22-{rng.randint(1000, 9999)} if you need it.", "ssn"),
    ]
    return rng.choice(kinds)


def _records(week: str, rng: random.Random, n: int, id_prefix: str) -> list[dict]:
    """`n` contract records in `week`: thumbs, some PII, some edits, some duplicates."""
    start = datetime.fromisoformat(week).replace(tzinfo=UTC)
    out = []
    for i in range(n):
        question, good, bad = rng.choice(_TOPICS)
        prompt = f"How do I {question}?"
        if rng.random() < 0.3:
            prompt = f"{_pii(rng)[0]} {prompt}"
        good_answer = rng.random() < 0.6
        completion = good if good_answer else bad
        rec = {
            "id": f"{id_prefix}-{i:04d}",
            "timestamp": (start + timedelta(seconds=rng.randint(3600, 6 * 86400))).isoformat().replace("+00:00", "Z"),
            "prompt": prompt,
            "completion": completion,
            "label": rng.choice(["up", "thumbs_up", True, 1])
            if good_answer
            else rng.choice(["down", False, -1, "thumbs_down"]),
            "user_id": f"u{rng.randint(1, 40)}",
            "conversation_id": f"c{rng.randint(1, 400)}",
            "model_version": "support-assistant-v3",
        }
        if not good_answer and rng.random() < 0.35:
            rec["edited_completion"] = good if rng.random() < 0.5 else f"{good} {_pii(rng)[0]}"
        if good_answer and rng.random() < 0.1:
            rec["edited_completion"] = completion.replace(" ", "  ", 1)  # whitespace only: trivial
        out.append(rec)
    # Exact duplicates (the same answer shown to another user) and near duplicates.
    for j, src in enumerate(rng.sample(out, k=max(2, n // 10))):
        dup = dict(src, id=f"{id_prefix}-dup{j}", user_id=f"u{rng.randint(41, 60)}")
        if j % 2:
            dup["completion"] = src["completion"].rstrip(".") + "!"
        out.append(dup)
    out.sort(key=lambda r: r["timestamp"])
    return out


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _openai(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        out.append(
            {
                "id": r["id"],
                "created": int(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp()),
                "model": r["model_version"],
                "user": r["user_id"],
                "messages": [
                    {"role": "system", "content": "You are the support assistant of Acme Cloud."},
                    {"role": "user", "content": [{"type": "text", "text": r["prompt"]}]},
                    {"role": "assistant", "content": r["completion"]},
                ],
                "feedback": r["label"],
            }
        )
    return out


def _langfuse(records: list[dict]) -> dict:
    traces = []
    for r in records:
        scores = [
            {
                "name": "user-feedback",
                "value": 1 if r["label"] in ("up", "thumbs_up", True, 1) else 0,
                "dataType": "NUMERIC",
            }
        ]
        if "edited_completion" in r:
            scores.append({"name": "correction", "dataType": "CORRECTION", "stringValue": r["edited_completion"]})
        traces.append(
            {
                "id": r["id"],
                "timestamp": r["timestamp"],
                "name": "support-chat",
                "input": {"messages": [{"role": "user", "content": r["prompt"]}]},
                "output": {"role": "assistant", "content": r["completion"]},
                "userId": r["user_id"],
                "sessionId": r["conversation_id"],
                "release": r["model_version"],
                "metadata": {"channel": "web"},
                "scores": scores,
            }
        )
    return {"data": traces}


def _langsmith(records: list[dict]) -> list[dict]:
    runs = []
    for r in records:
        feedback = {
            "key": "user_score",
            "score": 1 if r["label"] in ("up", "thumbs_up", True, 1) else 0,
            "created_at": r["timestamp"],
        }
        if "edited_completion" in r:
            feedback["correction"] = {"output": r["edited_completion"]}
        runs.append(
            {
                "id": r["id"],
                "name": "ChatOpenAI",
                "run_type": "llm",
                "start_time": r["timestamp"],
                "inputs": {"question": r["prompt"]},
                "outputs": {"answer": r["completion"]},
                "extra": {
                    "metadata": {
                        "user_id": r["user_id"],
                        "thread_id": r["conversation_id"],
                        "ls_model_name": r["model_version"],
                    }
                },
                "feedback": [feedback],
            }
        )
    return runs


def _bad_lines(week: str) -> list[bytes]:
    """One line of each row-level fault a JSONL dump can carry."""
    ts = f"{week}T12:00:00Z"
    ok = {"prompt": "How do I reset my password?", "completion": "Use the reset link.", "label": "up"}
    return [
        b'{"timestamp": "' + ts.encode() + b'", "prompt": "How do I export data?", "completion": "Use Rep',  # cut JSON
        json.dumps({**ok, "timestamp": ts, "label": "maybe"}).encode(),  # bad label
        json.dumps({"timestamp": ts, "completion": "No prompt here.", "label": "down"}).encode(),  # missing prompt
        json.dumps({**ok, "timestamp": "last tuesday"}).encode(),  # bad timestamp
        json.dumps({**ok, "timestamp": ts, "prompt": 42}).encode(),  # wrong type
        json.dumps({**ok, "timestamp": ts, "completion": "x" * 120_000}).encode(),  # huge text
        json.dumps({**ok, "timestamp": ts}).encode()[:-2] + b'\xff\xfe"}',  # bad UTF-8
        json.dumps({**ok, "timestamp": "2024-03-01T09:00:00Z"}).encode(),  # before the first week
    ]


def build_sample(out_dir: Path) -> list[Path]:
    """Write the sample dumps into `out_dir`; returns the files written."""
    rng = random.Random(20261005)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}

    w1 = _records(WEEKS[0], rng, 60, "app-w1")
    files["2026-10-05_app.jsonl"] = _jsonl(w1) + b"\n".join(_bad_lines(WEEKS[0])) + b"\n"

    w2 = _records(WEEKS[1], rng, 50, "app-w2")
    files["2026-10-12_app.jsonl.gz"] = _gzip(_jsonl(w2))

    support = pd.DataFrame(_records(WEEKS[1], rng, 24, "support-w2")).drop(columns=["model_version"])
    csv_text = support.to_csv(index=False, lineterminator="\n")
    csv_text += '"not enough fields",oops\n'  # malformed CSV row
    files["2026-10-12_support.csv"] = csv_text.encode()

    # Sunday evening of week 1 through Tuesday of week 2: one dump, two weeks.
    spanning = _records(WEEKS[0], rng, 12, "span")
    for k, rec in enumerate(spanning):
        when = datetime(2026, 10, 11, 20, tzinfo=UTC) + timedelta(hours=5 * k)
        rec["timestamp"] = when.isoformat().replace("+00:00", "Z")
    files["2026-10-11_spanning.jsonl"] = _jsonl(spanning)

    w3 = _records(WEEKS[2], rng, 40, "app-w3")
    frame = pd.DataFrame(w3)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["label"] = frame["label"].map(lambda v: v in ("up", "thumbs_up", True, 1))
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    files["2026-10-19_app.parquet"] = buf.getvalue()

    files["2026-10-19_openai_chat.json"] = json.dumps(
        _openai(_records(WEEKS[2], rng, 20, "chat-w3")), indent=1
    ).encode()

    files["2026-10-26_langfuse_traces.json"] = json.dumps(
        _langfuse(_records(WEEKS[3], rng, 25, "lf-w4")), indent=1
    ).encode()
    files["2026-10-26_langsmith_runs.jsonl"] = _jsonl(_langsmith(_records(WEEKS[3], rng, 25, "ls-w4")))

    pairs = []
    for k, (question, good, bad) in enumerate(_TOPICS):
        pairs.append(
            {
                "id": f"pair-{k}",
                "timestamp": f"2026-10-2{7 + k % 3}T10:00:00Z",
                "prompt": f"How do I {question}?",
                "chosen": good,
                "rejected": bad,
            }
        )
    files["2026-10-26_preferences_paired.jsonl"] = _jsonl(pairs)

    # An upload cut in half: every whole line before the cut is still read.
    partial = _gzip(_jsonl(_records(WEEKS[3], rng, 20, "partial-w4")))
    files["2026-10-26_app_partial.jsonl.gz"] = partial[: len(partial) // 2]

    written = []
    for name, data in sorted(files.items()):
        path = out_dir / name
        path.write_bytes(data)
        written.append(path)
    return written
