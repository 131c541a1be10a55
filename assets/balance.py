"""`balanced_feedback`: the week's training rows (shuffled) and held-out rows, with the KTO class
weights; the majority rows cut by downsampling beside it; a blocking check on the ratio."""

import dagster as dg
import pandas as pd

from assets.kept_and_dropped import emit_kept_and_dropped, kept_and_dropped_asset
from assets.metadata import frame_metadata
from assets.names import CLASS_RATIO_IN_RANGE
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.balance import RATIO_HIGH, RATIO_LOW, BalanceConfig, balance
from resources.library_config import config_from

BalanceSettings = config_from(
    BalanceConfig, fields=["eval_fraction", "max_ratio", "target_ratio", "seed", "split_salt"], name="BalanceSettings"
)


@kept_and_dropped_asset(
    "balanced_feedback",
    kept="Training rows in shuffled order (split=train; TRL's KTOTrainer trains in dataset order), then the held-out rows (split=eval); class weights in the metadata.",
    dropped="Majority-class rows cut beyond the extreme class ratio, with their reason.",
    checks=[
        dg.AssetCheckSpec(
            CLASS_RATIO_IN_RANGE,
            asset="balanced_feedback",
            partitions_def=feedback_weeks,
            blocking=True,
            description="λD·nD/(λU·nU) of the training rows lies in [1, 4/3] (KTO paper); fails when a class is missing.",
        )
    ],
)
def balanced_feedback(context: dg.AssetExecutionContext, config: BalanceSettings, scored_feedback: pd.DataFrame):
    week = context.partition_key
    result = balance(scored_feedback, config.to_library(), week=week)
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
    yield from emit_kept_and_dropped(
        "balanced_feedback",
        result.rows,
        {
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
        result.dropped,
        frame_metadata(result.dropped, ["row_id", "reason", "label", "prompt"]),
        # Held-out rows are kept (split=eval), not dropped.
        account_rows(scored_feedback["row_id"], result.rows["row_id"], result.dropped),
        checks=[
            dg.AssetCheckResult(
                check_name=CLASS_RATIO_IN_RANGE,
                asset_key="balanced_feedback",
                passed=w.in_range,
                metadata={"ratio": dg.MetadataValue.float(float(ratio)), "detail": why},
            )
        ],
    )
