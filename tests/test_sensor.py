import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from assets.partitions import CALENDAR
from assets.sensors import feedback_dump_sensor, plan_dump_runs
from kto_pipeline.ingest.dumps import DumpFile
from resources.feedback_source import FeedbackSource


def _now_week() -> str:
    return CALENDAR.week_of(pd.Timestamp.now(tz="UTC"))


def _week_ago(n: int) -> str:
    return (pd.Timestamp(_now_week()) - pd.Timedelta(weeks=n)).date().isoformat()


def _write(path, week: str, n: int, tag: str, day: int = 2):
    start = datetime.fromisoformat(week).replace(tzinfo=UTC)
    lines = [
        json.dumps(
            {
                "timestamp": (start + timedelta(days=day, minutes=i)).isoformat(),
                "prompt": f"{tag} q{i}",
                "completion": f"a{i}",
                "label": i % 2 == 0,
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")


def _tick(location, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"feedback_source": FeedbackSource(location=str(location))}
    )
    return feedback_dump_sensor(context)


def test_new_dump_gives_one_run_per_closed_week_and_defers_the_open_week(tmp_path):
    # One dump spanning two closed weeks and the current (open) week.
    last, before = _week_ago(1), _week_ago(2)
    lines = []
    for week in (before, last, _now_week()):
        start = datetime.fromisoformat(week).replace(tzinfo=UTC)
        lines.append(
            json.dumps({"timestamp": start.isoformat(), "prompt": f"q {week}", "completion": "a", "label": "up"})
        )
    (tmp_path / "dump.jsonl").write_text("\n".join(lines) + "\n")

    result = _tick(tmp_path)
    assert sorted(r.partition_key for r in result.run_requests) == [before, last]
    assert len({r.run_key for r in result.run_requests}) == 2
    cursor = json.loads(result.cursor)
    assert cursor["deferred"]["dump.jsonl"]["weeks"] == [_now_week()]

    # A second tick with the same dumps asks for nothing.
    again = _tick(tmp_path, result.cursor)
    assert again.run_requests == []
    assert "deferred" in (again.skip_reason.skip_message or "")


def test_changed_dump_gives_a_new_run_with_a_new_run_key(tmp_path):
    week = _week_ago(1)
    dump = tmp_path / "feedback.jsonl"
    _write(dump, week, 3, "v1")
    first = _tick(tmp_path)
    assert [r.partition_key for r in first.run_requests] == [week]

    _write(dump, week, 5, "v2")
    os.utime(dump, (dump.stat().st_atime, dump.stat().st_mtime + 10))
    second = _tick(tmp_path, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [week]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    mtime = os.stat(dump).st_mtime
    assert second.run_requests[0].run_key == f"{week}:feedback.jsonl@{mtime}-{dump.stat().st_size}"
    assert _tick(tmp_path, second.cursor).run_requests == []


def test_a_new_dump_for_a_week_already_curated_triggers_that_week_only(tmp_path):
    a, b = _week_ago(1), _week_ago(3)
    _write(tmp_path / "a.jsonl", a, 2, "a")
    first = _tick(tmp_path)
    _write(tmp_path / "b.jsonl", b, 2, "b")
    second = _tick(tmp_path, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [b]
    assert "b.jsonl@" in second.run_requests[0].tags["kto_pipeline/dumps"]


def test_dumps_touching_the_same_week_in_one_tick_share_one_run(tmp_path):
    week = _week_ago(1)
    _write(tmp_path / "a.jsonl", week, 2, "a")
    _write(tmp_path / "c.jsonl", week, 2, "c", day=4)
    result = _tick(tmp_path)
    assert [r.partition_key for r in result.run_requests] == [week]
    assert result.run_requests[0].tags["kto_pipeline/dumps"].count("@") == 2


def test_an_unreadable_dump_is_retried_next_tick_and_does_not_block_others(tmp_path):
    week = _week_ago(1)
    _write(tmp_path / "a.jsonl", week, 2, "a")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really parquet")
    first = _tick(tmp_path)
    assert [r.partition_key for r in first.run_requests] == [week]
    assert "b.parquet" not in json.loads(first.cursor)["versions"]

    frame = pd.DataFrame(
        [
            {
                "timestamp": pd.Timestamp(week, tz="UTC") + pd.Timedelta(days=1),
                "prompt": "q",
                "completion": "a",
                "label": True,
            }
        ]
    )
    frame.to_parquet(tmp_path / "b.parquet")
    second = _tick(tmp_path, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [week]
    assert "b.parquet@" in second.run_requests[0].tags["kto_pipeline/dumps"]


def test_missing_location_skips_with_a_reason(tmp_path):
    result = _tick(tmp_path / "nowhere")
    assert "does not exist" in result.skip_message


def test_deferred_week_is_requested_once_it_closes_without_rereading_the_dump():
    dump = DumpFile("/x/d.jsonl", "d.jsonl", "v1", 10, "jsonl", False)
    reads = []

    def weeks_of(d):
        reads.append(d.name)
        return {"2026-11-09", "2026-11-16"}

    plan = plan_dump_runs([dump], weeks_of, {}, last_closed_week="2026-11-09")
    assert list(plan.runs) == ["2026-11-09"] and plan.deferred == 1
    later = plan_dump_runs([dump], weeks_of, plan.cursor, last_closed_week="2026-11-16")
    assert list(later.runs) == ["2026-11-16"] and later.deferred == 0
    assert reads == ["d.jsonl"]
    assert plan_dump_runs([dump], weeks_of, later.cursor, last_closed_week="2026-11-23").runs == {}


def test_removed_dump_is_forgotten_and_comes_back_as_new():
    dump = DumpFile("/x/d.jsonl", "d.jsonl", "v1", 10, "jsonl", False)
    plan = plan_dump_runs([dump], lambda d: {"2026-11-09"}, {}, "2026-11-16")
    gone = plan_dump_runs([], lambda d: set(), plan.cursor, "2026-11-16")
    assert gone.cursor == {"versions": {}, "deferred": {}}
    back = plan_dump_runs([dump], lambda d: {"2026-11-09"}, gone.cursor, "2026-11-16")
    assert list(back.runs) == ["2026-11-09"]


def test_a_reset_cursor_replays_the_same_run_keys(tmp_path):
    """Deleting the cursor replays the requests with the same keys, which Dagster drops."""
    week = _week_ago(1)
    _write(tmp_path / "a.jsonl", week, 2, "a")
    first = _tick(tmp_path)
    replay = _tick(tmp_path, None)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in replay.run_requests]


def test_run_key_stays_bounded_when_many_dumps_share_a_week():
    from assets.sensors import run_key

    many = [f"dump-{i:03d}.jsonl@{1761234567.5 + i}-{1000 + i}" for i in range(40)]
    key = run_key("2026-11-09", many)
    assert key.startswith("2026-11-09:40 dumps:") and len(key) < 60
    assert key != run_key("2026-11-09", many[:-1] + ["dump-039.jsonl@changed"])
