import ast
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PROJECT


def test_definitions_load_with_every_asset_job_schedule_and_sensor():
    from definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {
        "raw_feedback",
        "raw_feedback_quarantine",
        "redacted_feedback",
        "deduplicated_feedback",
        "deduplicated_feedback_dropped",
        "scored_feedback",
        "scored_feedback_dropped",
        "balanced_feedback",
        "balanced_feedback_dropped",
        "synthetic_topup",
        "synthetic_topup_dropped",
        "kto_checkpoint",
        "eval_report",
    } <= keys
    assert {c.name for c in repo.asset_graph.asset_check_keys} == {
        "no_pii_left",
        "class_ratio_in_range",
        "no_regression",
        "rows_accounted",
    }
    # Training and evaluation hold the one GPU: the gpu pool serialises them across runs.
    assert repo.asset_graph.get(dg.AssetKey("kto_checkpoint")).pools == {"gpu"}
    assert defs.get_job_def("retrain_job") and defs.get_job_def("curate_job")
    assert defs.get_schedule_def("weekly_retrain_schedule")
    assert defs.get_sensor_def("feedback_dump_sensor")


def test_every_step_carries_a_blocking_rows_accounted_check():
    from definitions import defs

    graph = defs.get_repository_def().asset_graph
    side_outputs = {"raw_feedback_quarantine"} | {
        k.to_user_string() for k in graph.get_all_asset_keys() if k.to_user_string().endswith("_dropped")
    }
    steps = {k.to_user_string() for k in graph.get_all_asset_keys()} - side_outputs
    checked = {c.asset_key.to_user_string() for c in graph.asset_check_keys if c.name == "rows_accounted"}
    assert (
        steps
        == checked
        == {
            "raw_feedback",
            "redacted_feedback",
            "deduplicated_feedback",
            "scored_feedback",
            "balanced_feedback",
            "synthetic_topup",
            "kto_checkpoint",
            "eval_report",
        }
    )
    for key in graph.asset_check_keys:
        if key.name == "rows_accounted":
            assert graph.get_check_spec(key).blocking, key


def test_every_asset_shares_the_one_weekly_partitions_definition():
    from assets.partitions import feedback_weeks
    from definitions import defs

    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def == feedback_weeks, key


def test_dagster_definitions_validate_passes_on_workspace_yaml(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed validation" in proc.stdout + proc.stderr


def test_schedule_tick_targets_the_week_that_just_closed():
    from definitions import defs

    schedule = defs.get_schedule_def("weekly_retrain_schedule")
    tick = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 02:00 UTC
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]
    assert result.run_requests[0].job_name == "retrain_job"
    assert schedule.cron_schedule == "0 2 * * 1"


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2025, 1, 6), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_library_week_calendar_agrees_with_dagster_partitions(ts):
    from assets.partitions import CALENDAR, feedback_weeks

    assert CALENDAR.week_of(pd.Timestamp(ts)) == feedback_weeks.get_partition_key_for_timestamp(ts.timestamp())


def test_week_window_boundaries_are_monday_midnight_utc():
    from assets.partitions import CALENDAR

    start, end = CALENDAR.window("2026-10-12")
    assert start == pd.Timestamp("2026-10-12T00:00:00Z") and end == pd.Timestamp("2026-10-19T00:00:00Z")
    assert CALENDAR.week_of(end - timedelta(microseconds=1)) == "2026-10-12"
    assert CALENDAR.week_of(end) == "2026-10-19"


def test_domain_library_does_not_import_dagster():
    offenders = []
    for path in (PROJECT / "kto_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0].startswith("dagster") or n.split(".")[0] in ("assets", "resources", "definitions")
            ]
    assert offenders == []
