"""`balanced_feedback`: the week's training rows (shuffled) and held-out rows, with the KTO class
weights; the majority rows cut by downsampling beside it; a blocking check on the ratio."""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.ingest import CURATION
from assets.metadata import frame_metadata
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.balance import RATIO_HIGH, RATIO_LOW, BalanceConfig, balance

CLASS_RATIO_IN_RANGE = "class_ratio_in_range"


class BalanceSettings(dg.Config):
    eval_fraction: float = Field(default=0.1, description="Share of records held out for evaluation (chosen by record id, stable across reruns)")
    max_ratio: float = Field(default=10.0, description="Majority:minority ratio beyond which the majority class is downsampled")
    target_ratio: float = Field(default=7.0 / 6.0, description="λD·nD/(λU·nU) aimed at when a class weight must change (within [1, 4/3])")
    seed: int = Field(default=0, description="Shuffle and downsampling seed (combined with the week)")
    split_salt: str = Field(default="kto-eval-v1", description="Change it to draw a different held-out set")

    def to_config(self) -> BalanceConfig:
        return BalanceConfig(eval_fraction=self.eval_fraction, max_ratio=self.max_ratio, target_ratio=self.target_ratio, seed=self.seed, split_salt=self.split_salt)


@dg.multi_asset(
    outs={
        "balanced_feedback": dg.AssetOut(group_name=CURATION, description="Training rows in shuffled order (split=train; TRL's KTOTrainer trains in dataset order), then the held-out rows (split=eval); class weights in the metadata."),
        "balanced_feedback_dropped": dg.AssetOut(group_name=CURATION, description="Majority-class rows cut beyond the extreme class ratio, with their reason."),
    },
    partitions_def=feedback_weeks,
    check_specs=[
        dg.AssetCheckSpec(CLASS_RATIO_IN_RANGE, asset="balanced_feedback", partitions_def=feedback_weeks, blocking=True, description="λD·nD/(λU·nU) of the training rows lies in [1, 4/3] (KTO paper); fails when a class is missing."),
        rows_accounted_spec("balanced_feedback"),
    ],
)
def balanced_feedback(context: dg.AssetExecutionContext, config: BalanceSettings, scored_feedback: pd.DataFrame):
    week = context.partition_key
    result = balance(scored_feedback, config.to_config(), week=week)
    w, c = result.weights, result.counts
    ratio = w.ratio
    context.log.info(
        f"week {week}: {c['train']} training rows ({c['train_desirable']} desirable, {c['train_undesirable']} undesirable), "
        f"{c['eval']} held out, {c['dropped']} downsampled; weights λD={w.desirable} λU={w.undesirable}, ratio {ratio:.3f}"
    )
    if w.n_desirable == 0 or w.n_undesirable == 0:
        missing = "desirable" if w.n_desirable == 0 else "undesirable"
        why = f"no {missing} training rows this week: no class weight can balance a missing class"
    else:
        why = f"λD·nD/(λU·nU) = {ratio:.4f}, allowed [{RATIO_LOW:g}, {RATIO_HIGH:.4f}]"
    yield dg.MaterializeResult(
        asset_key="balanced_feedback",
        value=result.rows,
        metadata={
            "rows_in": c["rows_in"],
            "rows_train": c["train"],
            "rows_eval": c["eval"],
            "rows_dropped": c["dropped"],
            "train_desirable": c["train_desirable"],
            "train_undesirable": c["train_undesirable"],
            "eval_desirable": c["eval_desirable"],
            "eval_undesirable": c["eval_undesirable"],
            "desirable_weight": w.desirable,
            "undesirable_weight": w.undesirable,
            "raw_ratio": dg.MetadataValue.float(float(result.info["raw_ratio"])),
            "weighted_ratio": dg.MetadataValue.float(float(ratio)),
            **frame_metadata(result.rows, ["row_id", "split", "label", "prompt", "completion"]),
        },
        check_results=[
            dg.AssetCheckResult(check_name=CLASS_RATIO_IN_RANGE, asset_key="balanced_feedback", passed=w.in_range, metadata={"ratio": dg.MetadataValue.float(float(ratio)), "detail": why}),
            # Held-out rows are kept (split=eval), not dropped.
            rows_accounted("balanced_feedback", account_rows(scored_feedback["row_id"], result.rows["row_id"], result.dropped)),
        ],
    )
    yield dg.MaterializeResult(
        asset_key="balanced_feedback_dropped",
        value=result.dropped,
        metadata={**frame_metadata(result.dropped, ["row_id", "reason", "label", "prompt"])},
    )
