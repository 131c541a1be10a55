"""The main job, small: one simulated week through Dagster, both arms, measured."""

import json
import shutil

import dagster as dg
import pytest

from conftest import PROJECT
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.sim.results_table import results_table
from kto_pipeline.sim.simulation import SimulationConfig, run_simulation, simulated_weeks


def test_simulated_weeks_are_the_last_closed_ones():
    config = SimulationConfig(weeks=4, end_week="2026-11-16")
    assert simulated_weeks(config, WeekCalendar()) == ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16"]
    with pytest.raises(ValueError, match="arms"):
        SimulationConfig(arms=("sft",))
    with pytest.raises(ValueError, match="window_weeks"):
        SimulationConfig(window_weeks=5)


def test_one_week_runs_through_dagster_and_reports_both_arms(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    config = SimulationConfig(weeks=1, prompts_per_week=96, eval_samples=200, end_week="2026-11-16")
    lines = []
    results = run_simulation(config, project=PROJECT, home=home, say=lines.append)

    kto, sft = results["rows"]
    assert (kto["arm"], sft["arm"]) == ("kto", "sft")
    assert kto["steps"] == sft["steps"] > 0  # same step budget for both arms
    assert kto["promoted"] in (True, False) and kto["reward_accuracy"] is not None
    # The oracle judged the candidate's and the base's answers over HTTP, through the production client.
    assert 0.0 <= kto["win_rate"] <= 1.0 and sft["win_rate"] is None
    assert 0.0 <= kto["candidate_accuracy"] <= 1.0 and 0.0 <= kto["thumbs_up_rate"] <= 1.0
    assert any(line.startswith("[week 1/1 2026-11-16]") for line in lines)  # progress while it runs
    table = results_table(results)
    assert "base model held-out accuracy" in table and "sft" in table and "judge_win_rate" in table
    assert f"{kto['win_rate']:.3f} [" in table
    saved = json.loads((home / "simulator" / "carry_bug" / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"], default=str))

    # The week went through the persistent instance: every asset materialized for the partition.
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's storage class reads it
    instance = dg.DagsterInstance.from_config(str(home))
    for key in (
        "raw_feedback",
        "redacted_feedback",
        "deduplicated_feedback",
        "balanced_feedback",
        "kto_checkpoint",
        "eval_report",
    ):
        assert "2026-11-16" in instance.get_materialized_partitions(dg.AssetKey(key)), key
    report = home / "simulator" / "carry_bug" / "models" / "reports" / "2026-11-16" / "eval_report.md"
    assert report.is_file() and "judge win rate" in report.read_text()
    summary = json.loads((report.parent / "eval_summary.json").read_text())
    judged = summary["answers"]["judge"]
    assert judged["judge"].startswith("oracle-judge @ http://127.0.0.1:")
    assert judged["junk"] == 0 and judged["calls"] == results["judge_requests"].get("calls", 0)
    assert summary["answers"]["n_prompts"] > 0

    # The toy task's curation settings reach the week's run, and the production defaults of the
    # assets are left alone: the embedding stages only merge identical vectors here, so only
    # exact duplicates and contradictions are dropped (no distinct sums).
    full_config = json.loads(
        (home / "simulator" / "carry_bug" / "logs" / "retrain_job-2026-11-16.run_config.json").read_text()
    )
    run_config = full_config["ops"]
    assert full_config["resources"]["judge"]["config"]["kind"] == "openai"
    assert run_config["eval_report"]["config"]["answers"] == {"max_new_tokens": 4, "decode_join": ""}
    assert (
        run_config["deduplicated_feedback"]["config"] == {"semdedup_eps": config.semdedup_eps} == {"semdedup_eps": 0.0}
    )
    assert run_config["scored_feedback"]["config"] == {"threshold": 1.0}
    assert run_config["kto_checkpoint"]["config"] == {"window_weeks": config.window_weeks}
    dedup = instance.get_latest_materialization_event(
        dg.AssetKey("deduplicated_feedback")
    ).asset_materialization.metadata
    scored = instance.get_latest_materialization_event(dg.AssetKey("scored_feedback")).asset_materialization.metadata
    assert dedup["dropped/semantic_duplicate"].value == 0 and scored["dropped/diversity"].value == 0

    # The synthetic top-up ran against the simulated teacher, through distilabel's OpenAI client:
    # desirable rows are short in carry_bug, so it wrote better answers, and they reached training.
    assert full_config["resources"]["teacher_llm"]["config"]["model"] == "sim-teacher"
    teacher = results["teacher_requests"]
    assert teacher["calls"] > 0 and teacher.get("bad_request", 0) == 0
    assert teacher["improve_right"] + teacher["improve_wrong"] == teacher["calls"]
    assert kto["synthetic_rows"] > 0 and kto["synthetic_desirable"] == kto["synthetic_rows"]
    topup = instance.get_latest_materialization_event(dg.AssetKey("synthetic_topup")).asset_materialization.metadata
    assert topup["rows_kept"].value == kto["synthetic_rows"]
    assert "synthetic_rows" in table
