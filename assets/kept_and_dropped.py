"""The shape every curation step shares: a kept table, a table of what left (each row with its
reason), and the blocking `rows_accounted` check that the two add up to what came in.

One decorator declares the pair of outputs and the checks, one function yields them, so each
asset only says what it computed and what its metadata shows (as datatrove's filters all return
"keep" or "drop with this reason" and one driver handles them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.names import CURATION
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import RowAccount


def kept_and_dropped_asset(
    name: str,
    *,
    kept: str,
    dropped: str,
    dropped_suffix: str = "dropped",
    checks: Sequence[dg.AssetCheckSpec] = (),
    group: str = CURATION,
):
    """`@dg.multi_asset` of `name` (the kept rows, described by `kept`) and `name_<dropped_suffix>`
    (described by `dropped`), weekly, with `rows_accounted` and `checks` on `name`."""
    return dg.multi_asset(
        name=name,
        outs={
            name: dg.AssetOut(group_name=group, description=kept),
            f"{name}_{dropped_suffix}": dg.AssetOut(group_name=group, description=dropped),
        },
        partitions_def=feedback_weeks,
        check_specs=[*checks, rows_accounted_spec(name)],
    )


def emit_kept_and_dropped(
    name: str,
    kept: pd.DataFrame,
    kept_metadata: Mapping[str, Any],
    dropped: pd.DataFrame,
    dropped_metadata: Mapping[str, Any],
    account: RowAccount,
    *,
    dropped_suffix: str = "dropped",
    checks: Sequence[dg.AssetCheckResult] = (),
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The two materializations, then `checks` and the rows_accounted result of `account`."""
    yield dg.MaterializeResult(asset_key=name, value=kept, metadata=dict(kept_metadata))
    yield dg.MaterializeResult(asset_key=f"{name}_{dropped_suffix}", value=dropped, metadata=dict(dropped_metadata))
    yield from checks
    yield rows_accounted(name, account)
