"""The `rows_accounted` check every step carries: rows in = rows kept + rows dropped with a reason."""

import dagster as dg

from assets.metadata import counts_table
from assets.names import ROWS_ACCOUNTED
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import RowAccount


def rows_accounted_spec(asset: str) -> dg.AssetCheckSpec:
    # Blocking: a step that lost rows must not feed the next one.
    return dg.AssetCheckSpec(
        # Partitioned like the asset, so each week's result lands on that week's planned row.
        ROWS_ACCOUNTED,
        asset=asset,
        partitions_def=feedback_weeks,
        blocking=True,
        description="Every row the step read is kept or dropped with a reason: none lost, none counted twice, none appearing from nowhere.",
    )


def rows_accounted(asset: str, account: RowAccount) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=ROWS_ACCOUNTED,
        asset_key=asset,
        passed=account.balanced,
        description=account.summary(),
        metadata={
            f"{account.unit}_in": account.rows_in,
            "kept": account.kept,
            "dropped": account.dropped,
            "unaccounted": account.unaccounted,
            "dropped_without_reason": account.without_reason,
            "dropped_by_reason": counts_table(account.dropped_by_reason, "reason", account.unit),
            "detail": dg.MetadataValue.json(account.to_dict()),
        },
    )
