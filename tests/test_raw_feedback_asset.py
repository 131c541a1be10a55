import dagster as dg
import pandas as pd

from assets.ingest import raw_feedback
from kto_pipeline.devtools.sample_data import WEEKS
from resources import FeedbackSource, ParquetIOManager


def _materialize(dumps, storage, week, instance=None):
    return dg.materialize(
        [raw_feedback],
        partition_key=week,
        resources={
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "feedback_source": FeedbackSource(location=str(dumps)),
        },
        instance=instance or dg.DagsterInstance.ephemeral(),
    )


def _metadata(result, key):
    [mat] = [m for m in result.asset_materializations_for_node("raw_feedback") if m.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in mat.metadata.items()}


def test_materialization_stores_rows_and_quarantine_and_reports_counts(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    result = _materialize(sample_dumps, storage, "2026-10-05")
    assert result.success

    rows = pd.read_parquet(storage / "raw_feedback" / "2026-10-05.parquet")
    quarantine = pd.read_parquet(storage / "raw_feedback_quarantine" / "2026-10-05.parquet")
    meta = _metadata(result, "raw_feedback")
    qmeta = _metadata(result, "raw_feedback_quarantine")

    assert meta["records_in"] == meta["records_kept"] + meta["records_quarantined"]
    assert meta["records_quarantined"] == len(quarantine) == qmeta["dagster/row_count"]
    assert meta["dagster/row_count"] == len(rows) == meta["rows_out"]
    assert meta["desirable"] + meta["undesirable"] == len(rows) and meta["desirable"] == int(rows["label"].sum())
    assert meta["rows_out"] == meta["records_kept"] + meta["edits_expanded"] + meta["pairs_expanded"]
    # Every kind of bad row planted in the week-1 dump is there, with its reason.
    assert set(quarantine["reason"]) == {
        "malformed_json",
        "bad_label",
        "missing_prompt",
        "bad_timestamp",
        "bad_prompt",
        "text_too_long",
        "bad_utf8",
        "before_start_date",
    }
    assert {qmeta[f"quarantined/{r}"] for r in set(quarantine["reason"])} == {1}
    assert [c.name for c in meta["dagster/column_schema"].columns][:3] == ["row_id", "record_id", "week"]
    assert len(meta["preview"].records) == 5
    assert set(rows["week"]) == {"2026-10-05"}
    # The Sunday-night half of the spanning dump belongs to week 1, the rest to week 2.
    assert "2026-10-11_spanning.jsonl" in set(rows["dump"])


def test_every_sample_week_materializes_and_no_record_is_counted_twice(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    instance = dg.DagsterInstance.ephemeral()
    totals = 0
    ids = []
    for week in WEEKS:
        result = _materialize(sample_dumps, storage, week, instance)
        assert result.success
        totals += _metadata(result, "raw_feedback")["records_in"]
        ids += list(pd.read_parquet(storage / "raw_feedback" / f"{week}.parquet")["row_id"])
    assert instance.get_materialized_partitions(dg.AssetKey("raw_feedback")) == set(WEEKS)
    assert len(ids) == len(set(ids))

    from kto_pipeline.ingest.dumps import list_dumps
    from kto_pipeline.ingest.load import ingest

    assert totals == ingest(list_dumps(str(sample_dumps))).summary()["records_in"]


def test_rematerializing_a_week_gives_byte_identical_files(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    _materialize(sample_dumps, storage, "2026-10-12")
    first = {str(p.relative_to(storage)): p.read_bytes() for p in storage.rglob("*.parquet")}
    _materialize(sample_dumps, storage, "2026-10-12")
    again = {str(p.relative_to(storage)): p.read_bytes() for p in storage.rglob("*.parquet")}
    assert first == again and len(first) == 2


def test_the_same_dump_under_two_names_does_not_duplicate_rows(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    _materialize(sample_dumps, storage, "2026-10-19")
    before = pd.read_parquet(storage / "raw_feedback" / "2026-10-19.parquet")
    (sample_dumps / "zz_copy_of_app.parquet").write_bytes((sample_dumps / "2026-10-19_app.parquet").read_bytes())
    result = _materialize(sample_dumps, storage, "2026-10-19")
    after = pd.read_parquet(storage / "raw_feedback" / "2026-10-19.parquet")
    quarantine = pd.read_parquet(storage / "raw_feedback_quarantine" / "2026-10-19.parquet")
    assert after.equals(before)
    assert (
        (quarantine["reason"] == "duplicate_record").sum()
        == _metadata(result, "raw_feedback")["records_quarantined"]
        > 0
    )


def test_a_dump_that_cannot_be_read_fails_the_run_naming_the_file(sample_dumps, tmp_path):
    (sample_dumps / "2026-10-20_broken.parquet").write_bytes(b"not parquet at all")
    result = dg.materialize(
        [raw_feedback],
        partition_key="2026-10-19",
        resources={
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "w")),
            "feedback_source": FeedbackSource(location=str(sample_dumps)),
        },
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "cannot read Parquet feedback dump" in failure.event_specific_data.error.to_string()
    assert "2026-10-20_broken.parquet" in failure.event_specific_data.error.to_string()
