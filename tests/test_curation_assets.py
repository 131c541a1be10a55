"""raw → redacted → deduplicated over consecutive weeks, as the weekly job runs them."""

import dagster as dg
import pandas as pd

from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.redact import redacted_feedback
from kto_pipeline.sample_data import WEEKS
from resources import DedupHistoryStore, Embedder, FeedbackSource, ParquetIOManager, PiiRedactor


def _resources(dumps, storage):
    return {
        "io_manager": ParquetIOManager(base_path=str(storage)),
        "feedback_source": FeedbackSource(location=str(dumps)),
        "pii": PiiRedactor(),
        "embedder": Embedder(),
        "dedup_history": DedupHistoryStore(base_path=str(storage / "dedup_history")),
    }


def _meta(result, key):
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_weeks_in_order_dedup_against_history_and_reruns_are_byte_identical(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    resources = _resources(sample_dumps, storage)
    instance = dg.DagsterInstance.ephemeral()
    assets = [raw_feedback, redacted_feedback, deduplicated_feedback]
    first_pass = {}
    for i, week in enumerate(WEEKS):
        result = dg.materialize(assets, partition_key=week, resources=resources, instance=instance)
        assert result.success
        meta = _meta(result, "deduplicated_feedback")
        kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{week}.parquet")
        dropped = pd.read_parquet(storage / "deduplicated_feedback_dropped" / f"{week}.parquet")
        redacted = pd.read_parquet(storage / "redacted_feedback" / f"{week}.parquet")
        # Rows in = rows kept + rows dropped with a reason.
        assert len(redacted) == len(kept) + len(dropped) == meta["rows_in"]
        assert dropped["reason"].notna().all()
        assert meta["earlier_weeks"] == (", ".join(WEEKS[:i]) or "none")
        if i:
            assert dropped["reason"].str.endswith("_earlier_week").any()
        assert not set(kept["row_id"]) & set(dropped["row_id"])
        first_pass[week] = (storage / "deduplicated_feedback" / f"{week}.parquet").read_bytes()

    # Re-running earlier weeks after later ones changes nothing: a week only reads the weeks before it.
    for week in WEEKS[:2]:
        assert dg.materialize(assets, partition_key=week, resources=resources, instance=instance).success
        assert (storage / "deduplicated_feedback" / f"{week}.parquet").read_bytes() == first_pass[week]
    assert instance.get_materialized_partitions(dg.AssetKey("deduplicated_feedback")) == set(WEEKS)


def test_no_row_survives_that_an_earlier_week_already_kept(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    resources = _resources(sample_dumps, storage)
    assets = [raw_feedback, redacted_feedback, deduplicated_feedback]
    seen = set()
    from kto_pipeline.dedup import dedup_text

    for week in WEEKS:
        assert dg.materialize(assets, partition_key=week, resources=resources).success
        kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{week}.parquet")
        keys = {(dedup_text(p, c), bool(lab)) for p, c, lab in zip(kept["prompt"], kept["completion"], kept["label"], strict=True)}
        assert not keys & seen
        assert len(keys) == len(kept)
        seen |= keys
