"""kto_checkpoint (through the Pipes training process) and eval_report (promotion gate), two weeks."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.partitions import feedback_weeks
from assets.training import eval_report, kto_checkpoint
from conftest import assert_rows_accounted, checks
from conftest import materialization_metadata as _meta
from kto_pipeline.evaluate import EvalResult, KTOWeights, ModelMetrics, decide_promotion
from kto_pipeline.models.lineage import init_checkpoint, previous_week
from kto_pipeline.models.manifest import CheckpointManifest, read_manifest, write_manifest
from kto_pipeline.models.promotion import record_evaluation
from kto_pipeline.models.registry import EVAL_SUMMARY, ModelRegistry
from kto_pipeline.sim.judge_server import serve_app
from resources import JudgeLLM, ParquetIOManager
from resources.trainer import KTOTrainerResource

WEEK1, WEEK2 = "2026-11-02", "2026-11-09"

# Small, fast and learnable: a high learning rate and β on a tiny LoRA, a handful of steps.
RECIPE = {
    "learning_rate": 5e-3,
    "beta": 1.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_steps": 12,
    "warmup_ratio": 0.0,
    "logging_steps": 2,
    "save_steps": 4,
    "max_length": 64,
}


def week_rows(week: str, n: int, *, flip: bool = False, seed: int = 0) -> pd.DataFrame:
    """A task a tiny model can pick up in a few steps: the desirable answer to "name a colour"
    is a colour, the undesirable one a number."""
    rng = np.random.default_rng(seed)
    colours = ["red", "blue", "green", "yellow"]
    rows = []
    for i in range(n):
        label = bool(i % 2)
        completion = rng.choice(colours) if label else str(rng.integers(10, 99))
        rows.append(
            {
                "row_id": f"{week}-{i:03d}",
                "record_id": f"{week}-{i:03d}",
                "week": week,
                "prompt": f"name a colour ({i})",
                "prompt_messages": None,
                "completion": completion,
                "label": (not label) if flip else label,
                "signal": "thumb",
                "source": "production",
            }
        )
    frame = pd.DataFrame(rows)
    frame["split"] = np.where(np.arange(n) < n - 16, "train", "eval")
    # The held-out rows always carry the true labels: the gate judges against reality.
    frame.loc[frame["split"] == "eval", "label"] = [bool(i % 2) for i in range(n - 16, n)]
    return frame


# Answers of a few tokens: the tiny random model's text means nothing, the plumbing is the point.
ANSWERS = {"ops": {"eval_report": {"config": {"answers": {"max_new_tokens": 6}}}}}


def _materialize(storage, trainer, week, instance, judge=None):
    upstream = [
        dg.AssetSpec(name, partitions_def=feedback_weeks).with_io_manager_key("io_manager")
        for name in ("balanced_feedback", "synthetic_topup")
    ]
    return dg.materialize(
        [kto_checkpoint, eval_report, *upstream],
        selection=[kto_checkpoint, eval_report],
        partition_key=week,
        resources={
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "trainer": trainer,
            "judge": judge or JudgeLLM(),
        },
        run_config=ANSWERS,
        instance=instance,
        raise_on_error=False,
    )


def _tie_judge_app(seen: list):
    """An OpenAI-compatible endpoint whose judge calls every pair a tie (and records the requests)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        body = await request.json()
        seen.append(body["messages"][-1]["content"])
        message = {"role": "assistant", "content": "Equally good. [[C]]"}
        return JSONResponse(
            {"id": "t", "object": "chat.completion", "created": 0, "model": body["model"],
             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        )  # fmt: skip

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_two_weeks_chain_checkpoints_report_all_models_and_block_a_planted_regression(tmp_path, tiny_base):
    storage, models = tmp_path / "warehouse", tmp_path / "models"
    (storage / "balanced_feedback").mkdir(parents=True)
    week_rows(WEEK1, 64).to_parquet(storage / "balanced_feedback" / f"{WEEK1}.parquet", index=False)
    # Week 2 is a planted regression: its training labels are flipped.
    week_rows(WEEK2, 64, flip=True, seed=1).to_parquet(storage / "balanced_feedback" / f"{WEEK2}.parquet", index=False)
    trainer = KTOTrainerResource(base_model=tiny_base, models_root=str(models), device="cpu", recipe=RECIPE, threads=1)
    instance = dg.DagsterInstance.ephemeral()
    registry = ModelRegistry(models)

    seen: list[str] = []
    with serve_app(_tie_judge_app(seen)) as url:
        first = _materialize(storage, trainer, WEEK1, instance, JudgeLLM(kind="openai", model="tie", base_url=url))
    assert first.success, [e.message for e in first.all_events if e.is_failure]
    meta = _meta(first, "kto_checkpoint")
    folder = registry.checkpoint_dir(WEEK1)
    assert meta["checkpoint"] == str(folder)
    assert meta["global_step"] == 12 and meta["kind"] == "lora" and meta["healthy"] is True
    assert meta["started_from"].startswith("the base model")
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "README.md",
        "kto_checkpoint.json",
    ):
        assert (folder / name).is_file(), name
    card = (folder / "README.md").read_text()
    assert WEEK1 in card and "kto" in card
    # Pipes streamed the trainer's log lines into the run.
    messages = [entry.user_message for entry in instance.all_logs(first.run_id)]
    assert any(m.startswith("step ") and '"loss"' in m for m in messages)

    report = _meta(first, "eval_report")
    assert report["promoted"] is True
    for role in ("base", "candidate"):
        assert role in report["report"]
    # The candidate and the base (week 1's baseline) answered the 16 held-out prompts; the judge
    # endpoint was asked both orders of every differing pair, and the report shows it all.
    assert report["answers/prompts"] == 16
    assert len(seen) % 2 == 0 and all("[Answer A]" in text for text in seen)
    if seen:
        assert report["answers/win_rate"] == 0.5
    assert "judge win rate" in report["report"] and "| prompt | base | candidate | verdict |" in report["report"]
    assert registry.champion().week == WEEK1
    assert (registry.report_dir(WEEK1) / "eval_report.md").is_file()
    assert (folder / "eval" / "eval_report.md").is_file()
    summary = json.loads((registry.report_dir(WEEK1) / "eval_summary.json").read_text())
    assert summary["decision"]["promote"] is True and summary["answers"]["n_prompts"] == 16
    assert set(summary["result"]["models"]) == {"base", "candidate"}
    assert checks(first)[("eval_report", "no_regression")].passed
    assert_rows_accounted(first, "kto_checkpoint", "eval_report")

    second = _materialize(storage, trainer, WEEK2, instance)
    # Week 2 trains from week 1's checkpoint, then the gate blocks it.
    manifest2 = read_manifest(registry.checkpoint_dir(WEEK2))
    assert manifest2.init_from == str(folder)
    assert not second.success
    assert not checks(second)[("eval_report", "no_regression")].passed
    md = (registry.report_dir(WEEK2) / "eval_report.md").read_text()
    for role in ("base", "champion", "candidate"):
        assert role in md
    assert registry.champion().week == WEEK1  # the pointer did not move
    promoted = json.loads((models / "promotions" / f"{WEEK1}.json").read_text())
    assert promoted["checkpoint"] == str(folder)


def test_the_accelerate_launcher_trains_with_two_processes_through_pipes(tmp_path, tiny_base):
    storage, models = tmp_path / "warehouse", tmp_path / "models"
    (storage / "balanced_feedback").mkdir(parents=True)
    week_rows(WEEK1, 48).to_parquet(storage / "balanced_feedback" / f"{WEEK1}.parquet", index=False)
    trainer = KTOTrainerResource(
        base_model=tiny_base,
        models_root=str(models),
        device="cpu",
        launcher="accelerate",
        num_processes=2,
        recipe={**RECIPE, "max_steps": 4},
        threads=1,
    )
    assert "--multi_gpu" in trainer.command(tmp_path / "spec.json")  # on CPU: gloo ranks
    result = _materialize(storage, trainer, WEEK1, dg.DagsterInstance.ephemeral())
    assert result.success
    manifest = read_manifest(ModelRegistry(models).checkpoint_dir(WEEK1))
    assert manifest.kto.world_size == 2
    assert manifest.global_step == 4
    assert _meta(result, "kto_checkpoint")["global_step"] == 4  # one report, from rank 0


# --------------------------------------------------------------------------------------------
# The policy the assets call (kto_pipeline.models): no training, no Dagster
# --------------------------------------------------------------------------------------------

WEEK3 = "2026-11-16"


def _fake_checkpoint(registry: ModelRegistry, week: str, *, collapsed: bool = False) -> str:
    folder = registry.checkpoint_dir(week)
    folder.mkdir(parents=True)
    collapse = {"collapsed": collapsed, "reason": "both rewards fell" if collapsed else None, "evidence": []}
    write_manifest(
        folder,
        CheckpointManifest(
            kind="lora", base_model="base", weeks=[week], health={"healthy": not collapsed, "collapse": collapse}
        ),
    )
    return str(folder)


def _metrics(role: str, accuracy: float) -> ModelMetrics:
    return ModelMetrics(
        role=role,
        ref=role,
        n_rows=4,
        n_desirable=2,
        n_undesirable=2,
        reward_accuracy=accuracy,
        desirable_accuracy=accuracy,
        undesirable_accuracy=accuracy,
        reward_desirable_mean=0.1,
        reward_undesirable_mean=-0.1,
        margin=0.2,
        kl=0.0,
        loss=0.5,
        logps_desirable_mean=-3.0,
        logps_undesirable_mean=-4.0,
        rewards=(accuracy, 0.2, -0.1, -0.2),  # another model, other rewards
        labels=(True, True, False, False),
    )


def _eval_result(week: str, candidate_accuracy: float) -> EvalResult:
    return EvalResult(
        models={"base": _metrics("base", 0.5), "candidate": _metrics("candidate", candidate_accuracy)},
        refs={"base": "base", "candidate": "candidate"},
        champion_is_base=True,
        n_rows=4,
        n_desirable=2,
        n_undesirable=2,
        n_dropped=0,
        beta=0.1,
        weights=KTOWeights(),
        batch_size=4,
        max_length=64,
        week=week,
    )


def test_a_week_starts_from_last_weeks_checkpoint_unless_it_collapsed(tmp_path):
    assert previous_week(WEEK2) == WEEK1
    lone = ModelRegistry(tmp_path / "lone")
    assert init_checkpoint(lone, WEEK1) == (None, "the base model (no earlier checkpoint)")
    _fake_checkpoint(lone, WEEK1, collapsed=True)
    assert init_checkpoint(lone, WEEK2).checkpoint is None  # collapsed, and no champion: the base

    registry = ModelRegistry(tmp_path / "chain")
    first = _fake_checkpoint(registry, WEEK1)
    assert init_checkpoint(registry, WEEK2) == (first, f"last week's checkpoint ({WEEK1})")
    registry.promote(WEEK1, {})
    _fake_checkpoint(registry, WEEK2, collapsed=True)
    start = init_checkpoint(registry, WEEK3)
    assert start.checkpoint == first and start.note == f"the champion ({WEEK1}); last week's training collapsed"
    gap = init_checkpoint(registry, "2026-11-30")
    assert gap == (first, f"the champion ({WEEK1}); last week's training does not exist")


def test_recording_an_evaluation_writes_both_reports_then_promotes_or_withdraws(tmp_path):
    registry = ModelRegistry(tmp_path)
    checkpoint = _fake_checkpoint(registry, WEEK1)
    good = _eval_result(WEEK1, 0.75)
    decision = decide_promotion(good)
    artifacts = record_evaluation(registry, WEEK1, good, decision)
    assert decision.promote and registry.champion().week == WEEK1
    assert artifacts.markdown_path == registry.report_dir(WEEK1) / "eval_report.md"
    for folder in (registry.report_dir(WEEK1), registry.checkpoint_dir(WEEK1) / "eval"):
        assert (folder / "eval_report.md").read_text() == artifacts.markdown
        summary = json.loads((folder / EVAL_SUMMARY).read_text())
        assert summary["decision"]["promote"] is True and set(summary["result"]["models"]) == {"base", "candidate"}
    assert json.loads((tmp_path / "promotions" / f"{WEEK1}.json").read_text())["checkpoint"] == checkpoint

    bad = _eval_result(WEEK1, 0.25)  # a rerun whose gate now fails takes the promotion back
    decision = decide_promotion(bad)
    record_evaluation(registry, WEEK1, bad, decision)
    assert not decision.promote and registry.champion() is None
    assert json.loads((registry.report_dir(WEEK1) / EVAL_SUMMARY).read_text())["decision"]["promote"] is False
    with pytest.raises(FileNotFoundError, match=WEEK2):
        record_evaluation(registry, WEEK2, bad, decision)
