"""The cap: of the generated rows that survived redaction and dedup, keep at most the target."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kto_pipeline.curate.synthesis.plan import SynthesisPlan, target_counts
from kto_pipeline.curate.synthesis.reasons import DROPPED_DTYPES, SynthesisReason
from kto_pipeline.ingest.contract import SOURCE_SYNTHETIC, frame_from_records

__all__ = ["CapResult", "apply_cap"]


@dataclass
class CapResult:
    kept: pd.DataFrame  # ROW_DTYPES
    dropped: pd.DataFrame  # DROPPED_DTYPES, reason "over_cap"
    n_target: int


def apply_cap(generated: pd.DataFrame, plan: SynthesisPlan, real_rows: pd.DataFrame | None = None) -> CapResult:
    """Keep at most the plan's target of the (already redacted and deduplicated) generated
    rows, lowest plan rank first. With `real_rows` (e.g. the real rows after their own dedup)
    the target is recomputed from them with the plan's target_ratio and max_share."""
    n_target = plan.n_target
    if real_rows is not None:
        real = real_rows[~(real_rows["source"] == SOURCE_SYNTHETIC).fillna(False).to_numpy(dtype=bool)]
        n_des = int(real["label"].astype(bool).sum())
        c = target_counts(n_des, len(real) - n_des, plan.config.target_ratio, plan.config.max_share)
        n_target = c.n_target if c.short_label == plan.short_label else 0
    by_id = {r.row_id: r for r in plan.requests}
    unknown = sorted(set(generated["row_id"]) - set(by_id))
    if unknown:
        raise ValueError(f"{len(unknown)} generated rows are not in the plan, e.g. {unknown[0]}")
    if len(generated) and not (
        generated["source"].eq(SOURCE_SYNTHETIC).all()
        and generated["signal"].eq(plan.signal).all()
        and generated["label"].astype(bool).eq(bool(plan.short_label)).all()
    ):
        raise ValueError("generated rows must be synthetic rows of the plan's short class")
    order = generated["row_id"].map(lambda rid: by_id[rid].rank)
    ranked = generated.assign(_rank=order.to_numpy()).sort_values("_rank", kind="stable").drop(columns="_rank")
    kept, over = ranked.iloc[:n_target], ranked.iloc[n_target:]
    dropped = [
        {
            "row_id": rid,
            "source_row_id": by_id[rid].source_row_id,
            "generation_index": by_id[rid].generation_index,
            "reason": SynthesisReason.OVER_CAP,
            "detail": f"target {n_target} rows",
        }
        for rid in over["row_id"]
    ]
    return CapResult(kept.reset_index(drop=True), frame_from_records(dropped, DROPPED_DTYPES), n_target)
