"""One materialization on a Dagster instance stored in the real PostgreSQL server.

Skips when no server answers on 127.0.0.1:5432, except where KTO_PIPELINE_REQUIRE_POSTGRES=1
(CI sets it), where it fails instead.
"""

import os
import uuid

import dagster as dg
import pytest

from conftest import PROJECT

PG = {"host": os.environ.get("KTO_TEST_PG_HOST", "127.0.0.1"), "port": int(os.environ.get("KTO_TEST_PG_PORT", "5432")), "user": os.environ.get("KTO_TEST_PG_USER", "postgres")}


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
            resources={"io_manager": ParquetIOManager(base_path=str(tmp_path / "w")), "feedback_source": FeedbackSource(location=str(sample_dumps))},
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
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition = '2026-10-12'")
        assert cur.fetchone()[0] == 2  # raw_feedback and its quarantine
    assert not (home / "history").exists()  # nothing went to SQLite
