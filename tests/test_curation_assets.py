"""raw → redacted → deduplicated over consecutive weeks, as the weekly job runs them."""

import dagster as dg
import pandas as pd
import pytest

from assets.balance import balanced_feedback
from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.redact import redacted_feedback
from assets.score import scored_feedback
from conftest import assert_rows_accounted, checks
from conftest import curation_resources as _resources
from conftest import materialization_metadata as _meta
from kto_pipeline.devtools.sample_data import WEEKS
from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm
from resources import ParquetIOManager

CURATION_ASSETS = [raw_feedback, redacted_feedback, deduplicated_feedback, scored_feedback, balanced_feedback]


@pytest.fixture(scope="module")
def tiny_scorer(tmp_path_factory):
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "scorer"))


def test_weeks_in_order_dedup_against_history_and_reruns_are_byte_identical(sample_dumps, tmp_path, tiny_scorer):
    storage = tmp_path / "warehouse"
    resources = _resources(sample_dumps, storage, tiny_scorer)
    instance = dg.DagsterInstance.ephemeral()
    assets = CURATION_ASSETS
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

        # Scoring: every deduplicated row is scored, then kept or dropped with a reason.
        scored_meta = _meta(result, "scored_feedback")
        scored = pd.read_parquet(storage / "scored_feedback" / f"{week}.parquet")
        scored_dropped = pd.read_parquet(storage / "scored_feedback_dropped" / f"{week}.parquet")
        assert len(kept) == len(scored) + len(scored_dropped) == scored_meta["rows_in"]
        assert scored_meta["deita_scorer"].startswith("ran:")
        assert scored["evol_score"].between(1.0, 36.0).all()
        assert (scored["evol_score"] - scored["complexity"] * scored["quality"]).abs().max() < 1e-9
        assert set(scored_dropped["reason"]) <= {"diversity", "over_budget", "below_score_floor"}

        # Balance: training rows then held-out rows, in range, every row accounted for.
        balanced = pd.read_parquet(storage / "balanced_feedback" / f"{week}.parquet")
        downsampled = pd.read_parquet(storage / "balanced_feedback_dropped" / f"{week}.parquet")
        assert len(scored) == len(balanced) + len(downsampled)
        assert checks(result)[("balanced_feedback", "class_ratio_in_range")].passed
        assert_rows_accounted(
            result, "raw_feedback", "redacted_feedback", "deduplicated_feedback", "scored_feedback", "balanced_feedback"
        )
        meta_b = _meta(result, "balanced_feedback")
        train = balanced[balanced["split"] == "train"]
        assert meta_b["desirable_weight"] * train["label"].sum() / (
            meta_b["undesirable_weight"] * (~train["label"]).sum()
        ) == pytest.approx(meta_b["weighted_ratio"])
        first_pass[week] = {
            name: (storage / name / f"{week}.parquet").read_bytes()
            for name in ("deduplicated_feedback", "scored_feedback", "balanced_feedback")
        }

    # Re-running earlier weeks after later ones changes nothing: a week only reads the weeks before it.
    for week in WEEKS[:2]:
        assert dg.materialize(assets, partition_key=week, resources=resources, instance=instance).success
        for name, data in first_pass[week].items():
            assert (storage / name / f"{week}.parquet").read_bytes() == data, name
    assert instance.get_materialized_partitions(dg.AssetKey("balanced_feedback")) == set(WEEKS)


def test_without_a_scorer_the_selection_still_runs_and_says_so(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    result = dg.materialize(CURATION_ASSETS, partition_key=WEEKS[0], resources=_resources(sample_dumps, storage))
    assert result.success
    meta = _meta(result, "scored_feedback")
    assert meta["deita_scorer"].startswith("did not run")
    assert meta["evol_score_mean"] == "not scored"
    scored = pd.read_parquet(storage / "scored_feedback" / f"{WEEKS[0]}.parquet")
    assert scored["evol_score"].isna().all() and len(scored) == meta["rows_kept"]


def test_a_week_with_one_class_fails_the_ratio_check_and_names_the_missing_class(tmp_path):
    from assets.balance import BalanceSettings

    rows = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(6)],
            "record_id": [f"c{i}" for i in range(6)],
            "label": [True] * 6,
            "prompt": ["p"] * 6,
            "completion": ["c"] * 6,
        }
    )
    # Build the upstream file the IO manager will load, then run the asset alone.
    (tmp_path / "scored_feedback").mkdir()
    rows.to_parquet(tmp_path / "scored_feedback" / f"{WEEKS[0]}.parquet", index=False)
    result = dg.materialize(
        [
            balanced_feedback,
            dg.AssetSpec("scored_feedback", partitions_def=balanced_feedback.partitions_def).with_io_manager_key(
                "io_manager"
            ),
        ],
        partition_key=WEEKS[0],
        resources={"io_manager": ParquetIOManager(base_path=str(tmp_path))},
        run_config=dg.RunConfig({"balanced_feedback": BalanceSettings(eval_fraction=0.0)}),
        raise_on_error=False,
    )
    assert not result.success
    check = checks(result)[("balanced_feedback", "class_ratio_in_range")]
    assert not check.passed
    assert "no undesirable training rows" in check.metadata["detail"].value


def test_no_row_survives_that_an_earlier_week_already_kept(sample_dumps, tmp_path):
    storage = tmp_path / "warehouse"
    resources = _resources(sample_dumps, storage)
    assets = [raw_feedback, redacted_feedback, deduplicated_feedback]
    seen = set()
    from kto_pipeline.curate.dedup import dedup_text

    for week in WEEKS:
        assert dg.materialize(assets, partition_key=week, resources=resources).success
        kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{week}.parquet")
        keys = {
            (dedup_text(p, c), bool(lab))
            for p, c, lab in zip(kept["prompt"], kept["completion"], kept["label"], strict=True)
        }
        assert not keys & seen
        assert len(keys) == len(kept)
        seen |= keys


def test_synthetic_topup_writes_the_short_class_through_redaction_dedup_and_the_cap(
    sample_dumps, tmp_path, tiny_scorer
):
    from assets.synthetic import synthetic_topup
    from resources import TeacherLLM

    storage = tmp_path / "warehouse"
    resources = {
        **_resources(sample_dumps, storage),
        # The tiny random model decodes whitespace greedily: seeded sampling gives visible text.
        "teacher_llm": TeacherLLM(
            kind="transformers", model=tiny_scorer, device="cpu", max_new_tokens=24, temperature=1.0, threads=1
        ),
    }
    week = WEEKS[1]
    for earlier in WEEKS[:1]:  # a dedup history to compare against
        assert dg.materialize(CURATION_ASSETS, partition_key=earlier, resources=resources).success
    result = dg.materialize([*CURATION_ASSETS, synthetic_topup], partition_key=week, resources=resources)
    assert result.success
    balanced = pd.read_parquet(storage / "balanced_feedback" / f"{week}.parquet")
    train = balanced[balanced["split"] == "train"]
    synthetic = pd.read_parquet(storage / "synthetic_topup" / f"{week}.parquet")
    dropped = pd.read_parquet(storage / "synthetic_topup_dropped" / f"{week}.parquet")
    meta = _meta(result, "synthetic_topup")
    short_label = bool(train["label"].sum() < (~train["label"]).sum())
    assert meta["short_class"] == ("desirable" if short_label else "undesirable")
    assert meta["generator"].startswith("ran: transformers")
    assert len(synthetic) > 0
    assert (synthetic["label"] == short_label).all()  # only the short class
    assert (synthetic["source"] == "synthetic").all() and (synthetic["split"] == "train").all()
    assert set(synthetic["signal"]) == {"synthetic_improved" if short_label else "synthetic_degraded"}
    # The cap: synthetic rows are at most max_share (25%) of the training rows after the top-up.
    assert len(synthetic) <= 0.25 * (len(train) + len(synthetic)) + 1e-9
    # Every generated row is kept or dropped with a reason.
    assert meta["rows_generated"] == len(synthetic) + len(dropped[dropped["reason"] != "empty_generation"])
    assert dropped["reason"].notna().all()
    assert not set(synthetic["row_id"]) & set(train["row_id"])
    assert_rows_accounted(result, "synthetic_topup")
    assert checks(result)[("synthetic_topup", "rows_accounted")].metadata["rows_in"].value == meta["rows_requested"]


def test_synthetic_topup_screens_with_the_settings_the_week_was_deduplicated_with(sample_dumps, tmp_path, tiny_scorer):
    # A run that changes the sketch (num_perm, shingle_size) and a threshold: the top-up must
    # compare its rows with the week's history using the same sketch, or the signatures would
    # not even be comparable.
    from assets.dedup import DedupSettings
    from assets.synthetic import synthetic_topup
    from resources import TeacherLLM

    storage = tmp_path / "warehouse"
    resources = {
        **_resources(sample_dumps, storage),
        "teacher_llm": TeacherLLM(
            kind="transformers", model=tiny_scorer, device="cpu", max_new_tokens=24, temperature=1.0, threads=1
        ),
    }
    settings = DedupSettings(num_perm=64, shingle_size=3, minhash_threshold=0.7)
    run_config = dg.RunConfig({"deduplicated_feedback": settings})
    assert dg.materialize(CURATION_ASSETS, partition_key=WEEKS[0], resources=resources, run_config=run_config).success
    result = dg.materialize(
        [*CURATION_ASSETS, synthetic_topup], partition_key=WEEKS[1], resources=resources, run_config=run_config
    )
    assert result.success
    used = _meta(result, "synthetic_topup")["dedup_settings"]
    assert (used["num_perm"], used["shingle_size"], used["minhash_threshold"]) == (64, 3, 0.7)
    assert_rows_accounted(result, "synthetic_topup")


def test_a_step_that_loses_a_row_silently_fails_its_rows_accounted_check(sample_dumps, tmp_path, monkeypatch):
    import dataclasses

    import assets.dedup as dedup_asset

    real = dedup_asset.deduplicate

    def losing(*args, **kwargs):  # a dedup bug: one row neither kept nor dropped
        result = real(*args, **kwargs)
        return dataclasses.replace(result, kept=result.kept.iloc[1:])

    monkeypatch.setattr(dedup_asset, "deduplicate", losing)
    storage = tmp_path / "warehouse"
    result = dg.materialize(
        CURATION_ASSETS, partition_key=WEEKS[0], resources=_resources(sample_dumps, storage), raise_on_error=False
    )
    assert not result.success
    check = checks(result)[("deduplicated_feedback", "rows_accounted")]
    assert not check.passed
    lost = pd.read_parquet(storage / "redacted_feedback" / f"{WEEKS[0]}.parquet")
    kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{WEEKS[0]}.parquet")
    dropped = pd.read_parquet(storage / "deduplicated_feedback_dropped" / f"{WEEKS[0]}.parquet")
    [missing] = set(lost["row_id"]) - set(kept["row_id"]) - set(dropped["row_id"])
    assert check.metadata["unaccounted"].value == 1 and missing in check.description
    # The blocking check stops the week: nothing downstream was built on the short output.
    assert not (storage / "scored_feedback" / f"{WEEKS[0]}.parquet").exists()
