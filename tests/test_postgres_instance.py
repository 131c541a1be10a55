"""The Dagster instance stored in the real PostgreSQL server: one materialization, and the
main job (the simulation, each week through `dagster job execute`) end to end.

Skips when no server answers on 127.0.0.1:5432, except where KTO_PIPELINE_REQUIRE_POSTGRES=1
(CI sets it), where it fails instead.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import dagster as dg
import pytest

from conftest import PROJECT

PG = {
    "host": os.environ.get("KTO_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("KTO_TEST_PG_PORT", "5432")),
    "user": os.environ.get("KTO_TEST_PG_USER", "postgres"),
}


@pytest.fixture
def postgres_database():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname=os.environ.get("KTO_TEST_PG_DB", "test"), connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        message = f"no PostgreSQL server at {PG['host']}:{PG['port']}: {exc}"
        if os.environ.get("KTO_PIPELINE_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    admin.autocommit = True
    name = f"kto_pipeline_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.postgres
def test_materialization_is_recorded_in_postgres(postgres_database, sample_dumps, tmp_path, monkeypatch):
    import psycopg2

    from assets.ingest import raw_feedback
    from resources import FeedbackSource, ParquetIOManager

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", PG["host"])
    monkeypatch.setenv("DAGSTER_PG_PORT", str(PG["port"]))
    monkeypatch.setenv("DAGSTER_PG_USER", PG["user"])
    monkeypatch.setenv("DAGSTER_PG_DB", postgres_database)

    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize(
            [raw_feedback],
            partition_key="2026-10-12",
            resources={
                "io_manager": ParquetIOManager(base_path=str(tmp_path / "w")),
                "feedback_source": FeedbackSource(location=str(sample_dumps)),
            },
            instance=instance,
        )
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey("raw_feedback")) == {"2026-10-12"}
    finally:
        instance.dispose()

    # Read back from the database itself, not through Dagster.
    with psycopg2.connect(dbname=postgres_database, **PG) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs")
        assert [r[0] for r in cur.fetchall()] == ["SUCCESS"]
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition = '2026-10-12'"
        )
        assert cur.fetchone()[0] == 2  # raw_feedback and its quarantine
    assert not (home / "history").exists()  # nothing went to SQLite


def _point_instance_at(monkeypatch, database: str) -> None:
    """DAGSTER_PG_* as a user would export them: the main job must carry them to every process."""
    monkeypatch.setenv("DAGSTER_PG_HOST", PG["host"])
    monkeypatch.setenv("DAGSTER_PG_PORT", str(PG["port"]))
    monkeypatch.setenv("DAGSTER_PG_USER", PG["user"])
    monkeypatch.setenv("DAGSTER_PG_DB", database)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD", raising=False)


@pytest.mark.postgres
@pytest.mark.slow
def test_main_job_runs_with_the_instance_in_postgres(postgres_database, tmp_path, monkeypatch):
    """Two simulated weeks through `dagster job execute retrain_job`, read back from PostgreSQL."""
    import psycopg2

    from definitions import defs
    from kto_pipeline.sim.simulation import SimulationConfig, run_simulation

    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    _point_instance_at(monkeypatch, postgres_database)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # run_simulation hands its own to the runs
    # The Dagster part is what is under test: the naive SFT arm never touches the instance.
    config = SimulationConfig(weeks=2, prompts_per_week=96, eval_samples=200, arms=("kto",), end_week="2026-11-16")
    results = run_simulation(config, project=PROJECT, home=home, say=lambda line: None)
    weeks = results["weeks"]
    assert weeks == ["2026-11-09", "2026-11-16"]
    promoted = {row["week"]: row["promoted"] for row in results["rows"]}
    assert set(promoted) == set(weeks) and all(p in (True, False) for p in promoted.values())

    job = defs.resolve_job_def("retrain_job")
    assets = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    eval_checks = {
        key.name for key in job.asset_layer.asset_graph.asset_check_keys if key.asset_key == dg.AssetKey("eval_report")
    }
    assert {"raw_feedback", "kto_checkpoint", "eval_report"} <= assets and "no_regression" in eval_checks

    # Read back from the database itself, not through Dagster.
    with psycopg2.connect(dbname=postgres_database, **PG) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status, partition, pipeline_name FROM runs ORDER BY create_timestamp")
        runs = cur.fetchall()
        assert [(r[2], r[3]) for r in runs] == [
            (week, "retrain_job") for week in weeks
        ]  # one run a week, none elsewhere
        for run_id, status, week, _ in runs:
            # The blocking no_regression check fails the run on purpose when it does not promote.
            assert status == ("SUCCESS" if promoted[week] else "FAILURE"), (week, status, promoted[week])
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_FAILURE'", (run_id,)
            )
            assert cur.fetchone()[0] == (0 if promoted[week] else 1), week
        cur.execute(
            "SELECT asset_key, partition, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY 1, 2"
        )
        materialized = {(json.loads(key)[0], week): n for key, week, n in cur.fetchall()}
        assert materialized == {(asset, week): 1 for asset in assets for week in weeks}
        # Each check of eval_report evaluated once per week's run. The checks are not partitioned
        # (no partitions_def on their specs), so Dagster stores the result without the week and
        # leaves the run's PLANNED row beside it; with partitioned checks the row is the week's.
        week_of_run = {run_id: week for run_id, _, week, _ in runs}
        cur.execute(
            "SELECT check_name, run_id, partition, execution_status, evaluation_event FROM asset_check_executions"
            " WHERE asset_key = %s AND execution_status <> 'PLANNED'",
            (json.dumps(["eval_report"]),),
        )
        evaluated = [
            (name, week_of_run[run_id], partition, status, event)
            for name, run_id, partition, status, event in cur.fetchall()
        ]
        assert sorted((name, week) for name, week, *_ in evaluated) == sorted(
            (name, week) for name in eval_checks for week in weeks
        )
        for name, week, partition, status, event in evaluated:
            assert partition in (week, None) and status in ("SUCCEEDED", "FAILED") and event, (
                name,
                week,
                partition,
                status,
            )
            passed = json.loads(event)["dagster_event"]["event_specific_data"]["success"]
            assert passed is (status == "SUCCEEDED"), (name, week)
            if name == "no_regression":
                assert passed is promoted[week], week
    # Nothing went to SQLite under DAGSTER_HOME (compute logs may: they are files, not storage).
    assert not (home / "history").exists() and not (home / "schedules").exists()
    assert not [p for p in home.rglob("*") if p.suffix in (".db", ".sqlite")]

    # `dagster` in a fresh process, from the same environment, sees the same instance.
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    listed = subprocess.run(
        [sys.executable, "-m", "dagster", "run", "list"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert {r[0] for r in runs} <= set(listed.stdout.split()), listed.stdout
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.get_materialized_partitions(dg.AssetKey("eval_report")) == set(weeks)
    finally:
        instance.dispose()
