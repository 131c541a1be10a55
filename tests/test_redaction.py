"""Presidio redaction: seeded PII of every pattern entity type found, typed placeholders
consistent within a record, no network, and the blocking leak check."""

import json
import socket
import time

import dagster as dg
import pandas as pd
import pytest

from conftest import assert_rows_accounted, checks
from kto_pipeline.curate.redaction import (
    PATTERN_ENTITIES,
    Engines,
    RedactionConfig,
    redact,
    scan_for_leaks,
)
from kto_pipeline.ingest.contract import ROW_DTYPES, frame_from_records

# One value of each pattern entity type, in a form its recognizer scores at or above the
# default threshold without context words.
SEEDED = {
    "EMAIL_ADDRESS": "maria.lopez@example.com",
    "PHONE_NUMBER": "(212) 555-0143",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "DE89 3704 0044 0532 0130 00",
    "IP_ADDRESS": "81.2.69.142",  # a public address: private and loopback ones are not personal data
    "URL": "https://intranet.acme-corp.io/reset?token=8f3a9c2e71b4d6059e1f",  # public links stay; this one is personal
    "US_SSN": "536-22-4821",
    "US_ITIN": "912-70-1234",
    "MEDICAL_LICENSE": "BB1388568",
    "UK_NHS": "401 023 2137",
    "CRYPTO": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "MAC_ADDRESS": "00:1B:44:11:3A:B7",
}
# Presidio scores these from their surrounding words only (0.01-0.3 without context); with
# no spaCy pipeline there are no words to read, so they stay below the threshold.
CONTEXT_ONLY = {"US_BANK_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE"}


def _rows(records):
    out = []
    for r in records:
        base = {
            "record_id": r["record_id"],
            "week": "2026-10-05",
            "timestamp": pd.Timestamp("2026-10-06", tz="UTC"),
            "prompt": r["prompt"],
            "prompt_messages": r.get("prompt_messages"),
            "source": "production",
            "conversation_id": None,
            "user_id": None,
            "model_version": None,
            "metadata": None,
            "dump": "d.jsonl",
            "line": 1,
        }
        for i, (completion, label, signal) in enumerate(r["rows"]):
            out.append(
                {**base, "row_id": f"{r['record_id']}-{i}", "completion": completion, "label": label, "signal": signal}
            )
    return frame_from_records(out, ROW_DTYPES)


def test_every_reachable_pattern_entity_type_is_covered_by_the_seeded_corpus():
    assert set(SEEDED) | CONTEXT_ONLY == set(PATTERN_ENTITIES)


@pytest.mark.parametrize("where", ["prompt", "completion", "edit"])
def test_seeded_pii_of_every_type_is_replaced_with_its_typed_placeholder(where):
    records = []
    for etype, value in SEEDED.items():
        text = f"Please note: {value} is mine."
        prompt = text if where == "prompt" else "How do I update my details?"
        completion = text if where == "completion" else "Open Account → Profile and edit them there."
        rows = [(completion, True, "thumb")]
        if where == "edit":
            rows = [(f"Open Account → Profile. {text}", True, "edit"), (completion, False, "edit_original")]
        records.append({"record_id": etype, "prompt": prompt, "rows": rows})
    result = redact(_rows(records))
    assert scan_for_leaks(result.rows) == []
    for etype, value in SEEDED.items():
        texts = " ".join(
            result.rows.loc[result.rows["record_id"] == etype, ["prompt", "completion"]].to_numpy().ravel()
        )
        assert value not in texts, etype
        # An ITIN is also a well-formed SSN; Presidio resolves the tie to US_SSN. Either redacts it.
        assert any(f"<{t}_1>" in texts for t in ((etype, "US_SSN") if etype == "US_ITIN" else (etype,))), (etype, texts)
    assert set(result.entities_found) == set(SEEDED) - {"US_ITIN"}


def test_the_same_value_gets_the_same_placeholder_across_a_records_prompt_edit_and_original():
    email, other = "sam@example.org", "lee@example.net"
    records = [
        {
            "record_id": "r1",
            "prompt": f"I am {email}, my colleague is {other}. Why did {email} get no invoice?",
            "rows": [
                (f"Invoices for {email} go to {other}.", True, "edit"),
                (f"Invoices are sent to {email}.", False, "edit_original"),
            ],
        },
        {"record_id": "r2", "prompt": f"Contact {other} please", "rows": [("Done.", True, "thumb")]},
    ]
    out = redact(_rows(records)).rows.set_index("row_id")
    assert (
        out.loc["r1-0", "prompt"]
        == "I am <EMAIL_ADDRESS_1>, my colleague is <EMAIL_ADDRESS_2>. Why did <EMAIL_ADDRESS_1> get no invoice?"
    )
    assert out.loc["r1-0", "completion"] == "Invoices for <EMAIL_ADDRESS_1> go to <EMAIL_ADDRESS_2>."
    assert out.loc["r1-1", "completion"] == "Invoices are sent to <EMAIL_ADDRESS_1>."
    assert out.loc["r1-1", "prompt"] == out.loc["r1-0", "prompt"]
    # Another record numbers from 1 again: placeholders never link records.
    assert out.loc["r2-0", "prompt"] == "Contact <EMAIL_ADDRESS_1> please"


def test_chat_prompts_are_redacted_in_the_messages_and_the_text():
    messages = [
        {"role": "system", "content": "You help with billing."},
        {"role": "user", "content": "My card 4111 1111 1111 1111 was charged twice"},
    ]
    records = [
        {
            "record_id": "c",
            "prompt": "system: You help with billing.\nuser: My card 4111 1111 1111 1111 was charged twice",
            "prompt_messages": json.dumps(messages),
            "rows": [("Refunds take 5 days.", True, "thumb")],
        }
    ]
    out = redact(_rows(records)).rows.iloc[0]
    assert json.loads(out["prompt_messages"])[1]["content"] == "My card <CREDIT_CARD_1> was charged twice"
    assert out["prompt"] == "system: You help with billing.\nuser: My card <CREDIT_CARD_1> was charged twice"


def test_text_without_pii_is_left_byte_identical():
    records = [
        {
            "record_id": "n",
            "prompt": "How do I export 3 reports from 2024?",
            "rows": [("Use Reports → Export (CSV, 10 MB max).", True, "thumb")],
        }
    ]
    rows = _rows(records)
    assert redact(rows).rows.equals(rows)


def test_triggers_skip_only_recognizers_that_cannot_match():
    """Analysis with the cheap triggers equals analysis with every recognizer on every text."""
    texts = (
        [f"x {v} y" for v in SEEDED.values()]
        + [
            "Call +44 20 7946 0958 or write to a.b@c.co.uk",
            "ip fe80::1ff:fe23:4567:890a and 10.0.0.1",
            "nothing here at all",
            "Order 12345678 shipped to 221B Baker Street",
            "see www.example.com/path?q=1",
            "my number is 415 555 0199 and ssn 078-05-1120",
            "wallet bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        ]
        + list(
            pd.read_parquet(
                __import__("kto_pipeline.devtools.sample_data", fromlist=["SAMPLE_DIR"]).SAMPLE_DIR
                / "2026-10-19_app.parquet"
            )["prompt"]
        )
    )
    fast = Engines(RedactionConfig(use_triggers=True))
    full = Engines(RedactionConfig(use_triggers=False))
    for text in texts:
        key = lambda r: (r.start, r.end, r.entity_type, round(r.score, 6))  # noqa: E731
        assert sorted(map(key, fast.analyze(text))) == sorted(map(key, full.analyze(text))), text


def test_worker_processes_give_the_same_result_as_one_process():
    records = [
        {
            "record_id": f"r{i}",
            "prompt": f"I am user{i}@example.com, call (212) 555-01{i:02d}",
            "rows": [(f"Noted, user{i}@example.com.", i % 2 == 0, "thumb")],
        }
        for i in range(40)
    ]
    rows = _rows(records)
    one = redact(rows, RedactionConfig(workers=1))
    two = redact(rows, RedactionConfig(workers=2, min_records_per_worker=1, chunk_records=7))
    assert one.rows.equals(two.rows) and one.entities_found == two.entities_found


def test_a_week_gets_a_worker_per_2500_records_with_the_models_and_per_25k_without():
    from kto_pipeline.curate.redaction.redact import _workers

    models, patterns = RedactionConfig(workers=4), RedactionConfig(workers=4, ner=False)
    assert [_workers(models, n) for n in (1600, 4999, 5000, 7500, 100_000)] == [1, 1, 2, 3, 4]
    assert [_workers(patterns, n) for n in (1600, 49_999, 50_000)] == [1, 1, 2]
    assert _workers(RedactionConfig(workers=4, min_records_per_worker=1), 3) == 3
    with pytest.raises(ValueError, match="min_records_per_worker"):
        _workers(RedactionConfig(min_records_per_worker=0), 10)


def test_a_worker_killed_mid_week_fails_the_redaction_instead_of_hanging():
    import threading

    import psutil

    records = [
        {"record_id": f"r{i}", "prompt": f"I am user{i}@example.com", "rows": [(f"Noted {i}.", True, "thumb")]}
        for i in range(400)
    ]
    rows = _rows(records)
    outcome: dict = {}

    def run() -> None:
        try:
            redact(rows, RedactionConfig(workers=2, min_records_per_worker=1, chunk_records=5))
        except Exception as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    me = psutil.Process()
    deadline = time.monotonic() + 120
    workers: list = []
    while not workers and time.monotonic() < deadline:
        workers = [
            p
            for p in me.children()
            if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
        ]
        time.sleep(0.05)
    assert workers, "no worker process started"
    workers[0].kill()
    thread.join(timeout=180)
    assert not thread.is_alive(), "redaction hung after a worker died"
    assert isinstance(outcome.get("error"), RuntimeError)
    assert "worker process died" in str(outcome["error"])


def test_no_network_call_is_made(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    engines = Engines(RedactionConfig())
    found = engines.analyze("write to first.last@mail.example.co.uk")
    assert ("EMAIL_ADDRESS", "first.last@mail.example.co.uk") in {
        (r.entity_type, "write to first.last@mail.example.co.uk"[r.start : r.end]) for r in found
    }


def test_blocking_check_stops_a_week_whose_redaction_leaked(sample_dumps, tmp_path, monkeypatch):
    import assets.redact as redact_asset
    from assets.ingest import raw_feedback
    from kto_pipeline.curate.redaction import RedactionResult
    from resources import FeedbackSource, ParquetIOManager, PiiRedactor, RayCluster

    resources = {
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "w")),
        "feedback_source": FeedbackSource(location=str(sample_dumps)),
        "pii": PiiRedactor(),
        "ray_cluster": RayCluster(),
    }
    ok = dg.materialize([raw_feedback, redact_asset.redacted_feedback], partition_key="2026-10-12", resources=resources)
    evaluation = checks(ok)[("redacted_feedback", "no_pii_left")]
    assert evaluation.passed
    assert_rows_accounted(ok, "raw_feedback", "redacted_feedback")
    meta = ok.asset_materializations_for_node("redacted_feedback")[0].metadata
    assert meta["entities_replaced"].value > 0 and "EmailRecognizer" in meta["recognizers"].value

    monkeypatch.setattr(
        redact_asset, "redact", lambda rows, config, mapper=None: RedactionResult(rows)
    )  # a broken redactor
    broken = dg.materialize(
        [raw_feedback, redact_asset.redacted_feedback],
        partition_key="2026-10-12",
        resources=resources,
        raise_on_error=False,
    )
    evaluation = checks(broken)[("redacted_feedback", "no_pii_left")]
    assert not evaluation.passed and evaluation.metadata["leaks"].value > 0
    assert not broken.success
    hits = evaluation.metadata["first_hits"].value
    assert hits and set(hits[0]) == {"row_id", "field", "entity", "score"}  # never the PII itself
