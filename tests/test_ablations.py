"""The simulator's ablations: each names a real setting of the code location's job, and the
settings they turn work as a user would read them."""

import dagster as dg
import pandas as pd
import pytest

from assets.dedup import deduplicated_feedback
from assets.ingest import raw_feedback
from assets.redact import redacted_feedback
from conftest import assert_rows_accounted
from conftest import curation_resources as _resources
from conftest import materialization_metadata as _meta
from kto_pipeline.devtools.sample_data import WEEKS
from kto_pipeline.sim.ablations import ABLATIONS, get_ablation, merged
from kto_pipeline.sim.judge_server import RunningJudge
from kto_pipeline.sim.run_config import week_run_config
from kto_pipeline.sim.simulation import SimulationConfig
from kto_pipeline.train.window import TrainingWindow


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_is_a_valid_run_config_of_the_retrain_job_that_changes_it(name, tmp_path):
    from definitions import defs

    job = defs.resolve_job_def("retrain_job")
    judge = RunningJudge(base_url="http://127.0.0.1:9/v1", model="oracle", judge=None)
    ablation = get_ablation(name)
    full = week_run_config(SimulationConfig(), judge, tmp_path)
    config = SimulationConfig(ablate=name, **({} if ablation.teacher else {"teacher_accuracy": None}))
    changed = week_run_config(config, judge, tmp_path)
    assert dg.validate_run_config(job, changed)
    # The change is there and nothing else moved (the teacher ablation drops only the teacher).
    assert changed != full or not ablation.teacher
    assert merged(full, ablation.run_config) == changed


def test_an_ablation_without_a_teacher_refuses_a_teacher_and_unknown_names_are_listed():
    with pytest.raises(ValueError, match="without a teacher"):
        SimulationConfig(ablate="synthetic_topup")
    with pytest.raises(ValueError, match="unknown ablation 'dedupe'; one of dedup, "):
        SimulationConfig(ablate="dedupe")


def test_merged_lays_nested_changes_over_the_base_without_touching_it():
    base = {"ops": {"a": {"config": {"x": 1, "y": 2}}}, "resources": {"r": 1}}
    out = merged(base, {"ops": {"a": {"config": {"y": 3}}, "b": {"config": {}}}})
    assert out == {"ops": {"a": {"config": {"x": 1, "y": 3}}, "b": {"config": {}}}, "resources": {"r": 1}}
    assert base["ops"]["a"]["config"] == {"x": 1, "y": 2}


def test_class_weights_off_leaves_both_weights_at_one():
    on, off = TrainingWindow().weights(100, 400), TrainingWindow(class_weights=False).weights(100, 400)
    assert on.desirable > 1.0 and on.in_range
    assert (off.desirable, off.undesirable, off.n_desirable, off.n_undesirable) == (1.0, 1.0, 100, 400)


def test_dedup_off_passes_every_row_and_adds_nothing_to_the_history(sample_dumps, tmp_path):
    from assets.dedup import DedupSettings

    storage = tmp_path / "warehouse"
    resources = _resources(sample_dumps, storage)
    result = dg.materialize(
        [raw_feedback, redacted_feedback, deduplicated_feedback],
        partition_key=WEEKS[0],
        resources=resources,
        run_config=dg.RunConfig({"deduplicated_feedback": DedupSettings(enabled=False)}),
    )
    assert result.success
    redacted = pd.read_parquet(storage / "redacted_feedback" / f"{WEEKS[0]}.parquet")
    kept = pd.read_parquet(storage / "deduplicated_feedback" / f"{WEEKS[0]}.parquet")
    pd.testing.assert_frame_equal(kept, redacted)
    dropped = pd.read_parquet(storage / "deduplicated_feedback_dropped" / f"{WEEKS[0]}.parquet")
    assert dropped.empty and {"reason", "duplicate_of"} <= set(dropped.columns)
    meta = _meta(result, "deduplicated_feedback")
    assert (meta["rows_in"], meta["rows_dropped"]) == (len(redacted), 0) and meta["dedup"].startswith("off")
    assert_rows_accounted(result, "deduplicated_feedback")
    assert not (storage / "dedup_history").exists() or not any((storage / "dedup_history").rglob(f"*{WEEKS[0]}*"))
    # With it on, the same week does drop rows: the sample has duplicates to find.
    on = dg.materialize(
        [raw_feedback, redacted_feedback, deduplicated_feedback], partition_key=WEEKS[0], resources=resources
    )
    assert _meta(on, "deduplicated_feedback")["rows_dropped"] > 0
