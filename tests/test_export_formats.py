"""Real exports load as they come: Langfuse (public API and blob-storage export), LangSmith
(list_runs JSONL, bulk-export Parquet, list_feedback), OpenAI (chat and preference fine-tuning
files, stored chat completions) and TensorZero (inference and feedback tables), with ratings
joined to their responses across files and dumps.

The fixtures under tests/fixtures/exports/ are written from each vendor's own schemas (see the
README there); the expected rows below are what a user of each tool gets.
"""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.ingest import raw_feedback
from assets.sensors import feedback_dump_sensor
from kto_pipeline.ingest.adapters import adapt, detect_format
from kto_pipeline.ingest.dumps import list_dumps, read_dump
from kto_pipeline.ingest.load import IngestOptions, IngestResult, ingest
from resources import FeedbackSource, ParquetIOManager

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
WRITTEN = pd.Timestamp("2026-11-06T12:00:00Z")  # when the fixture dumps "were written"
WEEK = "2026-11-02"
SYSTEM = "system: You are the support assistant of Acme Cloud.\n"


def _copy(vendor: str, dest: Path, written: pd.Timestamp = WRITTEN) -> Path:
    folder = dest / vendor
    shutil.copytree(FIXTURES / vendor, folder)
    for path in folder.rglob("*"):
        os.utime(path, (written.timestamp(), written.timestamp()))
    return folder


def _ingest(folder: Path, **options) -> IngestResult:
    result = ingest(list_dumps(str(folder)), IngestOptions(**options))
    assert result.account().balanced, result.account().summary()
    assert len(result.quarantine) == int((result.ledger["fate"] == "quarantined").sum())
    return result


def _opt(value):
    return value if isinstance(value, str) else None


def rows_of(result: IngestResult) -> list[tuple]:
    return [
        (
            r.record_id,
            r.signal,
            r.label,
            r.prompt,
            r.completion,
            r.timestamp.isoformat(),
            _opt(r.user_id),
            _opt(r.conversation_id),
            _opt(r.model_version),
        )
        for r in result.rows.itertuples()
    ]


def quarantined(result: IngestResult) -> list[tuple]:
    return [(q.dump, q.line, q.reason) for q in result.quarantine.itertuples()]


def skipped(result: IngestResult) -> list[tuple]:
    s = result.ledger[result.ledger["fate"] == "skipped"]
    return [(e.dump, e.line, e.reason) for e in s.itertuples()]


def test_langfuse_public_api_trace_traces_list_scores_and_observations(tmp_path):
    result = _ingest(_copy("langfuse_api", tmp_path))
    assert rows_of(result) == [
        # a score on a GENERATION observation (its traceId's trace was not exported)
        (
            "obs-e1",
            "thumb",
            True,
            "user: How long are audit logs kept?",
            "Audit logs are kept for 400 days.",
            "2026-11-04T07:00:00+00:00",
            None,
            None,
            "gpt-4o-mini",
        ),
        # the single-trace GET: a BOOLEAN score inline, dated when it was given
        (
            "lf-trace-a",
            "thumb",
            True,
            SYSTEM + "user: How do I rotate my API key?",
            "Settings → API keys → Rotate; the old key works for 24 hours.",
            "2026-11-03T09:02:00+00:00",
            "user-1",
            "sess-1",
            "support-v7",
        ),
        # the traces list (score ids only) joined with the v2 scores list: a thumbs-down, then a
        # CORRECTION two days later, which decides the time
        (
            "lf-trace-b",
            "edit",
            True,
            "user: Can I export invoices as CSV?",
            "Yes: Billing → Invoices → Export → CSV.",
            "2026-11-05T08:00:00+00:00",
            "user-2",
            "sess-2",
            "support-v7",
        ),
        (
            "lf-trace-b",
            "edit_original",
            False,
            "user: Can I export invoices as CSV?",
            "No, only PDF.",
            "2026-11-05T08:00:00+00:00",
            "user-2",
            "sess-2",
            "support-v7",
        ),
        # input as a string holding JSON; a CATEGORICAL thumb
        (
            "lf-trace-c",
            "thumb",
            True,
            "user: Where do I change my plan?",
            "Billing → Plan → Change.",
            "2026-11-03T11:01:00+00:00",
            "user-3",
            "sess-3",
            "support-v7",
        ),
    ]
    assert set(result.rows["week"]) == {WEEK}
    assert quarantined(result) == [("scores.json", 6, "orphan_feedback")]
    assert "no response with id lf-trace-missing" in result.quarantine.loc[0, "detail"]
    assert skipped(result) == [
        ("observations.json", 1, "not_a_response"),  # a SPAN
        ("scores.json", 4, "not_user_feedback"),  # an evaluator's hallucination score
        ("traces.json", 3, "unrated"),  # nobody rated lf-trace-d
    ]
    assert result.summary()["by_format"] == {
        "langfuse": {"records": 12, "joined": 4, "orphaned": 1, "unrated": 1, "kept": 8, "quarantined": 1, "skipped": 3}
    }


def test_langfuse_blob_storage_export_snake_case_json_strings_and_its_timestamps(tmp_path):
    result = _ingest(_copy("langfuse_blob", tmp_path))
    assert rows_of(result) == [
        (
            "lfb-obs-b1",
            "thumb",
            False,
            "user: Do you support SCIM?",
            "Not yet.",
            "2026-11-03T14:02:00+00:00",
            None,
            None,
            "gpt-4o-mini",
        ),
        (
            "lfb-trace-a",
            "thumb",
            True,
            "user: How do I enable SSO?",
            "Security → SSO → Add provider.",
            "2026-11-03T13:01:00+00:00",
            "user-5",
            "bsess-a",
            "support-v8",
        ),
    ]
    traces = "p1/traces/2026-11-04T00-00-00.jsonl"
    assert quarantined(result) == [(traces, 3, "bad_prompt")]
    assert "input is a string that is not JSON" in result.quarantine.loc[0, "detail"]
    assert skipped(result) == [
        ("p1/scores/2026-11-04T00-00-00.jsonl", 3, "response_quarantined"),
        (traces, 2, "unrated"),  # its score names the observation, which is the rated response
    ]


def test_langsmith_runs_feedback_and_bulk_export_parquet(tmp_path):
    result = _ingest(_copy("langsmith", tmp_path))
    assert rows_of(result) == [
        # bulk export: inputs / outputs / extra as JSON strings in Parquet
        (
            "1b64098b-4ab7-43f6-afee-992304000005",
            "thumb",
            True,
            "What regions do you host in?",
            "EU and US.",
            "2026-11-03T15:41:00+00:00",
            "user-12",
            None,
            None,
        ),
        # rated up, then down an hour later: the latest thumb wins
        (
            "1b64098b-4ab7-43f6-afee-992304000001",
            "thumb",
            False,
            "Can I pay by invoice?",
            "Only cards are accepted.",
            "2026-11-03T16:00:00+00:00",
            "user-8",
            "thread-8",
            "support-v7",
        ),
        # an LLM run: LangChain messages in, generations out; a correction in the feedback
        (
            "1b64098b-4ab7-43f6-afee-992304000002",
            "edit",
            True,
            SYSTEM + "user: How do I add a teammate?",
            "Team → Members → Invite; they get an email and join once they accept.",
            "2026-11-03T15:11:00+00:00",
            "user-9",
            "thread-9",
            "gpt-4o-mini",
        ),
        (
            "1b64098b-4ab7-43f6-afee-992304000002",
            "edit_original",
            False,
            SYSTEM + "user: How do I add a teammate?",
            "Go to Team → Members → Invite and enter their email.",
            "2026-11-03T15:11:00+00:00",
            "user-9",
            "thread-9",
            "gpt-4o-mini",
        ),
        # wrap_openai: the outputs are a ChatCompletion
        (
            "1b64098b-4ab7-43f6-afee-992304000003",
            "thumb",
            True,
            "user: When do exports run?",
            "Exports run nightly at 02:00 UTC.",
            "2026-11-03T15:21:00+00:00",
            "user-10",
            None,
            "gpt-4o-mini",
        ),
    ]
    assert quarantined(result) == [("runs.jsonl", 4, "missing_completion")]
    assert "has no outputs (status error: TimeoutError" in result.quarantine.loc[0, "detail"]
    assert skipped(result) == [
        ("feedback.jsonl", 1, "superseded"),
        ("feedback.jsonl", 5, "not_user_feedback"),  # an evaluator's correctness key
        ("feedback.jsonl", 6, "response_quarantined"),
    ]
    by_format = result.summary()["by_format"]["langsmith"]
    assert (by_format["records"], by_format["joined"], by_format["kept"]) == (12, 6, 8)


def test_openai_fine_tuning_files_and_stored_completions(tmp_path):
    result = _ingest(_copy("openai", tmp_path))
    got = rows_of(result)
    assert [g[1:] for g in got] == [
        # chat fine-tuning: demonstrations, dated when their file was written
        (
            "demonstration",
            True,
            SYSTEM + "user: How do I reset 2FA?",
            "Security → Two-factor → Reset, then scan the new QR code.",
            "2026-11-06T12:00:00+00:00",
            None,
            None,
            None,
        ),
        # an earlier tool call stays in the prompt, as text
        (
            "demonstration",
            True,
            'user: What\'s the weather in Paris?\nassistant: [tool call] get_weather({"city":"Paris"})\ntool: {"temp_c":18}',
            "It is 18 °C in Paris.",
            "2026-11-06T12:00:00+00:00",
            None,
            None,
            None,
        ),
        # preference fine-tuning: a pair
        (
            "pair_chosen",
            True,
            "user: How do I invite a guest?",
            "Team → Guests → Invite; guests see shared projects only.",
            "2026-11-06T12:00:00+00:00",
            None,
            None,
            None,
        ),
        (
            "pair_rejected",
            False,
            "user: How do I invite a guest?",
            "You can't.",
            "2026-11-06T12:00:00+00:00",
            None,
            None,
            None,
        ),
        # a stored completion, its thumb in the metadata the app set
        (
            "thumb",
            True,
            "user: Can I upload large files?",
            "Yes, up to 10 GB per file.",
            "2026-11-06T11:00:00+00:00",
            "user-13",
            None,
            "gpt-4o-mini-2024-07-18",
        ),
    ]
    assert got[4][0] == "chatcmpl-s1"
    assert quarantined(result) == [
        ("stored_completions.json", 2, "tool_call_response"),  # content null, tool_calls only
        ("stored_completions.json", 3, "missing_prompt"),  # exported without its messages
    ]
    assert "messages.list('chatcmpl-s3')" in result.quarantine.loc[1, "detail"]
    assert skipped(result) == [("chat_finetune.jsonl", 3, "zero_weight"), ("stored_completions.json", 4, "unrated")]

    off = _ingest(tmp_path / "openai", demonstrations=False)
    assert "demonstration" not in set(off.rows["signal"])
    assert skipped(off).count(("chat_finetune.jsonl", 1, "unrated")) == 1


def test_tensorzero_inferences_metric_and_demonstration_feedback(tmp_path):
    result = _ingest(_copy("tensorzero", tmp_path))
    episode = "01a1a5ff-62a0-7000-8000-0000000000e1"
    assert rows_of(result) == [
        (
            "01a1a600-4d00-7000-8000-000000000001",
            "thumb",
            False,
            SYSTEM + "user: How do I pause a subscription?",
            "You can't pause; cancel and resubscribe.",
            "2026-11-04T10:01:00+00:00",
            "user-15",
            episode,
            "gpt4o_mini_v2",
        ),
        # a demonstration is an edit of its inference
        (
            "01a1a604-e0e0-7000-8000-000000000002",
            "edit",
            True,
            SYSTEM + "user: Which browsers are supported?",
            "Chrome, Firefox, Safari and Edge, the last two versions of each.",
            "2026-11-05T09:00:00+00:00",
            "user-16",
            episode,
            "gpt4o_mini_v2",
        ),
        (
            "01a1a604-e0e0-7000-8000-000000000002",
            "edit_original",
            False,
            SYSTEM + "user: Which browsers are supported?",
            "Chrome only.",
            "2026-11-05T09:00:00+00:00",
            "user-16",
            episode,
            "gpt4o_mini_v2",
        ),
        # a JSON function: its raw output; a system given as template arguments; a legacy "value" text block
        (
            "01a1a609-74c0-7000-8000-000000000004",
            "thumb",
            True,
            'system: {"product": "Acme Cloud"}\nuser: My invoice #88 is wrong',
            '{"topic":"billing","invoice":88}',
            "2026-11-04T10:11:00+00:00",
            "user-17",
            episode,
            "json_v1",
        ),
    ]
    assert quarantined(result) == [("ChatInference.jsonl", 3, "tool_call_response")]
    assert skipped(result) == [
        ("BooleanMetricFeedback.jsonl", 4, "response_quarantined"),
        ("BooleanMetricFeedback.jsonl", 5, "not_user_feedback"),  # task_success is not a thumbs metric
        ("CommentFeedback.jsonl", 1, "not_user_feedback"),
    ]
    # The inference without a timestamp column (ClickHouse leaves it out of SELECT *) is dated by
    # its UUIDv7 id.
    [dump] = list_dumps(str(tmp_path / "tensorzero" / "ChatInference.jsonl"))
    records = [raw.value for raw in read_dump(dump)]
    assert "timestamp" not in records[2]
    assert adapt(records[2]).record.timestamp == pd.Timestamp("2026-11-04T10:15:00.250Z")


def test_every_fixture_record_is_recognised_and_forcing_the_format_reads_the_same(tmp_path):
    expected = {
        "langfuse_api": "langfuse",
        "langfuse_blob": "langfuse",
        "langsmith": "langsmith",
        "openai": "openai",
        "tensorzero": "tensorzero",
    }
    for vendor, fmt in expected.items():
        for dump in list_dumps(str(FIXTURES / vendor)):
            for raw in read_dump(dump):
                assert detect_format(raw.value) == fmt, (dump.name, raw.line)
        folder = _copy(vendor, tmp_path / "forced")
        auto, forced = _ingest(folder), _ingest(folder, format=fmt)
        pd.testing.assert_frame_equal(auto.rows, forced.rows)
        pd.testing.assert_frame_equal(auto.quarantine, forced.quarantine)


def test_thumb_rule_names_scales_and_categories_are_configurable(tmp_path):
    when = "2026-11-03T10:00:00Z"
    trace = {"id": "t1", "timestamp": when, "input": "q", "output": "a", "sessionId": "s"}
    scores = [
        {"id": f"s{i}", "traceId": tid, "name": name, "value": value, "dataType": dt, "timestamp": when, **extra}
        for i, (tid, name, value, dt, extra) in enumerate(
            [
                ("t1", "stars", 5, "NUMERIC", {}),
                ("t2", "stars", 3, "NUMERIC", {}),
                ("t3", "stars", 1, "NUMERIC", {}),
                ("t4", "outcome", 0, "CATEGORICAL", {"stringValue": "resolved"}),
            ]
        )
    ]
    traces = [dict(trace, id=f"t{i}", input=f"question {i}", output=f"answer {i}") for i in range(1, 5)]
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "traces.json").write_text(json.dumps({"data": traces}))
    (folder / "scores.json").write_text(json.dumps({"data": scores}))
    result = _ingest(
        folder,
        feedback_names=("stars", "outcome"),
        thumb_up_min=4,
        thumb_down_max=2,
        thumb_categories={"resolved": True},
    )
    assert result.rows[["record_id", "label"]].values.tolist() == [["t1", True], ["t3", False], ["t4", True]]
    assert ("scores.json", 2, "neutral_score") in skipped(result)
    # By default those names are not thumbs: nothing trains.
    assert _ingest(folder).rows.empty
    with pytest.raises(ValueError, match="set together"):
        IngestOptions(thumb_up_min=4)


def test_lookback_and_duplicate_ratings(tmp_path):
    folder = _copy("langfuse_api", tmp_path)
    # The correction came two days after lf-trace-b: outside a one-day look-back it is an orphan.
    short = _ingest(folder, feedback_lookback_days=1)
    orphans = short.quarantine[short.quarantine["reason"] == "orphan_feedback"]
    assert len(orphans) == 2 and "the look-back is 1 days" in " ".join(orphans["detail"])
    assert short.rows.loc[short.rows["record_id"] == "lf-trace-b", "signal"].tolist() == ["thumb"]
    # The same score exported twice is read once.
    shutil.copy(folder / "scores.json", folder / "scores_again.json")
    again = _ingest(folder)
    assert set(again.quarantine.loc[again.quarantine["dump"] == "scores_again.json", "reason"]) == {"duplicate_record"}
    pd.testing.assert_frame_equal(again.rows, _ingest(_copy("langfuse_api", tmp_path / "b")).rows)


def _late_feedback_dumps(folder: Path) -> None:
    """A LangSmith run in week 1's dump; its thumb in week 2's dump."""
    run = json.loads((FIXTURES / "langsmith" / "runs.jsonl").read_text().splitlines()[0])
    feedback = json.loads((FIXTURES / "langsmith" / "feedback.jsonl").read_text().splitlines()[0])
    feedback["created_at"] = "2026-11-10T09:00:00.000000Z"
    folder.mkdir(parents=True)
    for name, record, written in (
        ("2026-11-08_runs.jsonl", run, "2026-11-08T23:00:00Z"),
        ("2026-11-15_feedback.jsonl", feedback, "2026-11-15T23:00:00Z"),
    ):
        (folder / name).write_text(json.dumps(record) + "\n")
        stamp = pd.Timestamp(written).timestamp()
        os.utime(folder / name, (stamp, stamp))


def test_late_feedback_lands_in_the_week_it_was_given_and_reruns_give_the_same_bytes(tmp_path):
    dumps = tmp_path / "dumps"
    _late_feedback_dumps(dumps)
    result = _ingest(dumps)
    assert rows_of(result) == [
        (
            "1b64098b-4ab7-43f6-afee-992304000001",
            "thumb",
            True,
            "Can I pay by invoice?",
            "Only cards are accepted.",
            "2026-11-10T09:00:00+00:00",
            "user-8",
            "thread-8",
            "support-v7",
        )
    ]
    assert result.weeks() == {"2026-11-09"}  # the run is counted where its rating lands
    assert result.weeks_by_dump() == {
        "2026-11-08_runs.jsonl": {"2026-11-09"},
        "2026-11-15_feedback.jsonl": {"2026-11-09"},
    }

    storage, instance = tmp_path / "warehouse", dg.DagsterInstance.ephemeral()
    resources = {
        "io_manager": ParquetIOManager(base_path=str(storage)),
        "feedback_source": FeedbackSource(location=str(dumps)),
    }
    written = []
    for _ in range(2):
        for week in ("2026-11-02", "2026-11-09"):
            assert dg.materialize([raw_feedback], partition_key=week, resources=resources, instance=instance).success
        written.append({p.relative_to(storage): p.read_bytes() for p in sorted(storage.rglob("*.parquet"))})
    assert written[0] == written[1]
    week1 = pd.read_parquet(storage / "raw_feedback" / "2026-11-02.parquet")
    week2 = pd.read_parquet(storage / "raw_feedback" / "2026-11-09.parquet")
    assert (len(week1), len(week2)) == (0, 1)


def test_the_sensor_runs_the_week_a_late_thumb_lands_in(tmp_path):
    dumps = tmp_path / "dumps"
    _late_feedback_dumps(dumps)
    late = dumps / "2026-11-15_feedback.jsonl"
    late.rename(tmp_path / late.name)  # first only the run's dump is there
    context = dg.build_sensor_context(resources={"feedback_source": FeedbackSource(location=str(dumps))})
    first = feedback_dump_sensor(context)
    assert [r.partition_key for r in first.run_requests or []] == ["2026-11-02"]  # an unrated response
    (tmp_path / late.name).rename(late)
    context = dg.build_sensor_context(
        cursor=first.cursor, resources={"feedback_source": FeedbackSource(location=str(dumps))}
    )
    second = feedback_dump_sensor(context)
    assert [r.partition_key for r in second.run_requests] == ["2026-11-09"]


def test_raw_feedback_over_every_export_reports_per_format_counts(tmp_path):
    dumps = tmp_path / "exports"
    for vendor in ("langfuse_api", "langfuse_blob", "langsmith", "openai", "tensorzero"):
        _copy(vendor, dumps)
    library = _ingest(dumps).for_week(WEEK)
    storage = tmp_path / "warehouse"
    result = dg.materialize(
        [raw_feedback],
        partition_key=WEEK,
        resources={
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "feedback_source": FeedbackSource(location=str(dumps)),
        },
    )
    assert result.success
    stored = pd.read_parquet(storage / "raw_feedback" / f"{WEEK}.parquet")
    assert sorted(zip(stored["record_id"], stored["signal"], strict=True)) == sorted(
        zip(library.rows["record_id"], library.rows["signal"], strict=True)
    )
    [mat] = [
        m for m in result.asset_materializations_for_node("raw_feedback") if m.asset_key == dg.AssetKey("raw_feedback")
    ]
    meta = {k: v.value for k, v in mat.metadata.items()}
    table = {r.data["format"]: r.data for r in meta["records_by_format"].records}
    assert set(table) == {"langfuse", "langsmith", "openai", "tensorzero"}
    assert {fmt: (t["records"], t["joined"], t["orphaned"], t["unrated"], t["kept"]) for fmt, t in table.items()} == {
        "langfuse": (19, 7, 1, 2, 12),
        "langsmith": (12, 6, 0, 0, 8),
        "openai": (8, 0, 0, 1, 4),
        "tensorzero": (11, 5, 0, 0, 7),
    }
    assert meta["records_in"] == meta["records_kept"] + meta["records_quarantined"] + meta["records_skipped"] == 50
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "rows_accounted"]
    assert check.passed
