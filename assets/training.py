"""`kto_checkpoint` (a week's KTO fine-tune, in the `gpu` pool, through Pipes) and `eval_report`
(held-out metrics of the new checkpoint, the champion and the base; the promotion gate)."""

import base64
import re
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.names import NO_REGRESSION, TRAINING
from assets.partitions import feedback_weeks
from kto_pipeline.config.deployment import DeploymentSettings
from kto_pipeline.core.accounting import RowAccount, account_counts, account_rows
from kto_pipeline.curate.balance import (
    SPLIT_EVAL,
    SPLIT_TRAIN,
    training_mix,
)
from kto_pipeline.evaluate import (
    AnswerConfig,
    EvalConfig,
    KTOWeights,
    PromotionPolicy,
    decide_promotion,
    evaluate_answers,
    evaluate_candidates,
)
from kto_pipeline.models.lineage import init_checkpoint
from kto_pipeline.models.manifest import collapse_of, read_manifest
from kto_pipeline.models.promotion import record_evaluation
from kto_pipeline.train import TrainLineage, TrainSpec, resolve_recipe
from kto_pipeline.train.window import TrainingWindow
from resources.judge import JudgeLLM
from resources.library_config import config_from
from resources.trainer import KTOTrainerResource

# The most weeks a training window can reach back (the asset's upstream partition mapping is
# fixed when the code location loads); `TrainingSettings.window_weeks` picks up to this many.
MAX_WINDOW_WEEKS = DeploymentSettings.from_env().max_window_weeks


def _window(weeks: int) -> dg.TimeWindowPartitionMapping:
    return dg.TimeWindowPartitionMapping(
        start_offset=-(weeks - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    )


TrainingSettings = config_from(TrainingWindow, name="TrainingSettings")


def _trained_account(window_rows: list[pd.DataFrame], train: pd.DataFrame, reported: dict | None) -> RowAccount:
    """The window's rows → the rows handed to the trainer → the rows it trained on."""
    handed = account_rows(
        pd.concat([r["row_id"] for r in window_rows]) if window_rows else [], train["row_id"], train.iloc[0:0]
    )
    if not handed.balanced:
        return replace(handed, note="window rows → training rows")
    if reported is None:
        return account_counts(len(train), 0, {}, note="the trainer reported no data summary")
    if int(reported.get("rows_in", -1)) != len(train):
        return account_counts(
            len(train), int(reported.get("rows_in", 0)), {}, note="training rows handed → rows the trainer read"
        )
    dropped = {"prompt_too_long": int(reported.get("dropped_prompt_too_long", 0))}
    return account_counts(len(train), int(reported["rows"]), dropped, note="training rows → rows trained")


@dg.asset(
    partitions_def=feedback_weeks,
    group_name=TRAINING,
    pool="gpu",
    retry_policy=dg.RetryPolicy(
        max_retries=2, delay=5
    ),  # a killed trainer resumes from its last checkpoint (resources/trainer.py)
    ins={
        "balanced_feedback": dg.AssetIn(
            partition_mapping=_window(MAX_WINDOW_WEEKS), metadata={"allow_missing_partitions": True}
        ),
        "synthetic_topup": dg.AssetIn(
            partition_mapping=_window(MAX_WINDOW_WEEKS), metadata={"allow_missing_partitions": True}
        ),
        "kto_checkpoint": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
            dagster_type=dg.Nothing,
        ),
    },
    check_specs=[rows_accounted_spec("kto_checkpoint")],
    description="A KTO fine-tune (TRL KTOTrainer; LoRA by default) on the window's training rows, starting from last week's checkpoint; a Hugging Face folder with a model card.",
)
def kto_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingSettings,
    balanced_feedback: dict[str, pd.DataFrame],
    synthetic_topup: dict[str, pd.DataFrame],
    trainer: KTOTrainerResource,
):
    week = context.partition_key
    settings = config.to_library()
    try:
        window = settings.weeks(list(balanced_feedback), week, MAX_WINDOW_WEEKS)
    except ValueError as err:
        raise dg.Failure(str(err)) from None
    real = [balanced_feedback[w][balanced_feedback[w]["split"] == SPLIT_TRAIN] for w in window]
    synthetic = [synthetic_topup[w] for w in window if w in synthetic_topup]
    train = training_mix(real + synthetic, seed=config.seed, week=week)
    eval_rows = balanced_feedback[week][balanced_feedback[week]["split"] == SPLIT_EVAL]
    if train.empty:
        raise dg.Failure(f"no training rows in weeks {window}")
    n_d, n_u = int(train["label"].sum()), int((~train["label"].astype(bool)).sum())
    weights = settings.weights(n_d, n_u)
    if not (n_d and n_u):
        raise dg.Failure(
            f"the training window has {n_d} desirable and {len(train) - n_d} undesirable rows: KTO needs both"
        )

    registry = trainer.registry()
    work_dir = registry.work_dir(week)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = work_dir / "train_rows.parquet", work_dir / "eval_rows.parquet"
    train.to_parquet(train_path, index=False)
    eval_rows.to_parquet(eval_path, index=False)
    init_from, init_note = init_checkpoint(registry, week)
    sources = train["source"].value_counts().to_dict() if "source" in train.columns else {}
    context.log.info(
        f"week {week}: {len(train)} training rows from {window} ({sources}), λD={weights.desirable} λU={weights.undesirable}; starting from {init_note}"
    )
    spec = TrainSpec(
        train_rows=str(train_path),
        eval_rows=str(eval_path) if len(eval_rows) else None,
        base_model=trainer.base_model,
        init_from=init_from,
        output_dir=str(registry.checkpoint_dir(week)),
        work_dir=str(work_dir),
        desirable_weight=weights.desirable,
        undesirable_weight=weights.undesirable,
        recipe=dict(config.recipe),
        lineage=TrainLineage(
            week=week,
            weeks=window,
            rows=len(train),
            desirable=n_d,
            undesirable=len(train) - n_d,
            sources=sources,
            init=init_note,
        ),
    )
    result = trainer.train(context, spec, work_dir)
    reported = (result.metadata or {}).get("data")
    reported = getattr(reported, "data", reported)
    return dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "window": dg.MetadataValue.text(", ".join(window)),
            "train_rows": len(train),
            "eval_rows": len(eval_rows),
            "desirable_weight": weights.desirable,
            "undesirable_weight": weights.undesirable,
            "started_from": dg.MetadataValue.text(init_note),
        },
        data_version=result.data_version,
        check_results=[
            rows_accounted(
                "kto_checkpoint",
                _trained_account(real + synthetic, train, reported if isinstance(reported, dict) else None),
            )
        ],
    )


# `extra` (more metric rules, as objects) stays a library-only field.
PromotionSettings = config_from(PromotionPolicy, exclude=["extra"], name="PromotionSettings")
AnswerSettings = config_from(AnswerConfig, name="AnswerSettings")


class EvalSettings(config_from(EvalConfig, name="EvalSettingsBase")):
    """The evaluation's settings, the promotion policy's and the held-out answers'."""

    policy: PromotionSettings = Field(
        default_factory=PromotionSettings, description="The promotion gate (kto_pipeline.evaluate.PromotionPolicy)"
    )
    answers: AnswerSettings = Field(
        default_factory=AnswerSettings,
        description="How the candidate and the champion answer the held-out prompts (kto_pipeline.evaluate.AnswerConfig)",
    )


def _inline_images(markdown: str, folder: Path) -> str:
    """The report's PNG links as data URIs, so the Dagster UI shows the plots inline."""

    def embed(match: re.Match) -> str:
        path = folder / match.group(2)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", embed, markdown)


def _answer_metadata(answers) -> dict:
    if answers is None:
        return {"answers/prompts": 0}
    out = {"answers/prompts": len(answers.prompts)}
    for name, interval in (
        ("win_rate", answers.win_rate),
        ("edit_closer", answers.edit.closer if answers.edit else None),
        ("reproduced_change", answers.reproduction.change if answers.reproduction else None),
    ):
        if interval is not None and interval.n:
            out[f"answers/{name}"] = dg.MetadataValue.float(interval.estimate)
            if interval.known:
                out[f"answers/{name}_low"] = dg.MetadataValue.float(interval.low)
                out[f"answers/{name}_high"] = dg.MetadataValue.float(interval.high)
    return out


@dg.asset(
    partitions_def=feedback_weeks,
    group_name=TRAINING,
    pool="gpu",
    deps=[kto_checkpoint],
    check_specs=[
        dg.AssetCheckSpec(
            NO_REGRESSION,
            asset="eval_report",
            partitions_def=feedback_weeks,
            blocking=True,
            description="The new checkpoint does not regress beyond the tolerance against the champion (or the base) and its training did not collapse; only then does it become the champion.",
        ),
        rows_accounted_spec("eval_report"),
    ],
    description="Held-out KTO metrics of the new checkpoint, the champion and the base, with plots; the candidate's "
    "and the champion's answers to the held-out prompts, judge-free signals and a pairwise judge; the promotion decision.",
)
def eval_report(
    context: dg.AssetExecutionContext,
    config: EvalSettings,
    balanced_feedback: pd.DataFrame,
    trainer: KTOTrainerResource,
    judge: JudgeLLM,
):
    week = context.partition_key
    registry = trainer.registry()
    candidate = registry.checkpoint(week)
    if candidate is None:
        raise dg.Failure(f"week {week} has no finished checkpoint under {registry.checkpoint_dir(week)}")
    manifest = read_manifest(candidate)
    recipe = resolve_recipe(manifest.recipe if manifest is not None else None)
    champion = registry.champion_before(week)
    eval_rows = balanced_feedback[balanced_feedback["split"] == SPLIT_EVAL]
    trained_weights = manifest.kto.weights if manifest is not None and manifest.kto is not None else {}
    weights = KTOWeights(float(trained_weights.get("desirable", 1.0)), float(trained_weights.get("undesirable", 1.0)))
    result = evaluate_candidates(
        eval_rows,
        candidate=str(candidate),
        champion=champion.checkpoint if champion else None,
        base=trainer.base_model,
        beta=recipe.beta,
        weights=weights,
        batch_size=config.batch_size,
        max_length=recipe.max_length,
        device=trainer.device,
        week=week,
    )
    baseline = champion.checkpoint if champion else trainer.base_model
    answers = evaluate_answers(
        eval_rows,
        candidate=str(candidate),
        baseline=baseline,
        baseline_role=result.baseline_role,
        config=config.answers.to_library(),
        data_format=result.data_format,
        judge=judge.backend(),
        judge_template=judge.prompt_template() if judge.enabled() else None,
        device=trainer.device,
        say=context.log.info,
    )
    collapse = collapse_of(manifest)
    collapsed = collapse is not None
    decision = decide_promotion(
        result,
        config.policy.to_library(),
        collapsed=collapsed,
        collapse_reason=str(collapse.get("reason")) if collapse else None,
        answers=answers,
    )
    artifacts = record_evaluation(registry, week, result, decision, answers)
    report_dir = registry.report_dir(week)
    context.log.info(
        f"week {week}: {'promoted' if decision.promote else 'not promoted'}; " + "; ".join(decision.reasons)
    )
    cand = result.models["candidate"].scalars()
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(_inline_images(artifacts.markdown, report_dir)),
            "report_path": dg.MetadataValue.path(str(artifacts.markdown_path)),
            "promoted": decision.promote,
            "champion_before": dg.MetadataValue.text(champion.week if champion else "base model"),
            "eval_rows": len(eval_rows),
            **{f"candidate/{k}": dg.MetadataValue.float(float(v)) for k, v in cand.items() if isinstance(v, float)},
            **_answer_metadata(answers),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_REGRESSION,
                passed=decision.promote,
                metadata={
                    "decision": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
                    "collapsed": collapsed,
                },
            ),
            rows_accounted(
                "eval_report", account_counts(len(eval_rows), result.n_rows, {"prompt_too_long": result.n_dropped})
            ),
        ],
    )
