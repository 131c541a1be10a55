"""`scored_feedback`: DEITA complexity and quality scores and DEITA's diversity-aware selection;
the rows the selection left out, with reasons, beside it."""

import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.ingest import CURATION
from assets.metadata import counts_table, frame_metadata, label_balance
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.dedup import embed_rows
from kto_pipeline.curate.select import SelectionConfig, SelectionReason, select_diverse
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.scorer import DeitaScorerResource


class SelectionSettings(dg.Config):
    threshold: float = Field(default=0.9, description="Keep a row only if its cosine to every kept row of its class is at most this (DEITA: 0.9)")
    budget: int | None = Field(default=None, description="Most rows to keep in all, split across the classes in proportion; none: no cap")
    score_floor: float | None = Field(default=None, description="Drop desirable rows whose evol score (1..36) is below this; none: no floor")


def week_embeddings(rows: pd.DataFrame, week: str, dedup_history: DedupHistoryStore, embedder: Embedder) -> tuple[np.ndarray, int]:
    """The rows' SemDeDup vectors from the week's dedup history; rows missing there (history
    written by an older run) are embedded now. Returns (vectors, rows embedded now)."""
    history = dedup_history.load_week(week)
    stored = {} if history is None else dict(zip(history.row_ids, history.embeddings))
    ids = rows["row_id"].astype(str).tolist()
    missing = [i for i, rid in enumerate(ids) if rid not in stored]
    fresh = embed_rows(rows.iloc[missing], embedder.get().embed) if missing else None
    dim = fresh.shape[1] if fresh is not None else (history.dim if history is not None else 0)
    out = np.zeros((len(ids), dim), dtype=np.float32)
    for i, rid in enumerate(ids):
        if rid in stored:
            out[i] = stored[rid]
    if fresh is not None:
        out[missing] = fresh
    return out, len(missing)


@dg.multi_asset(
    outs={
        "scored_feedback": dg.AssetOut(group_name=CURATION, description="The selected rows with DEITA complexity, quality and evol_score (NaN when no scorer is configured)."),
        "scored_feedback_dropped": dg.AssetOut(group_name=CURATION, description="Rows DEITA's diversity-aware selection left out: below the score floor, too similar to a better row, or over the budget."),
    },
    partitions_def=feedback_weeks,
    check_specs=[rows_accounted_spec("scored_feedback")],
)
def scored_feedback(
    context: dg.AssetExecutionContext,
    config: SelectionSettings,
    deduplicated_feedback: pd.DataFrame,
    deita_scorer: DeitaScorerResource,
    embedder: Embedder,
    dedup_history: DedupHistoryStore,
):
    week = context.partition_key
    rows = deduplicated_feedback
    scorer = deita_scorer.get()
    started = time.monotonic()
    if scorer is not None and len(rows):
        result = scorer.score(rows)
        scores, score_info = result.scores, result.info
        context.log.info(f"week {week}: scored {len(rows)} rows ({score_info['unique_prompts']} distinct prompts) in {time.monotonic() - started:.1f}s")
        scorer_note = f"ran: complexity {score_info['complexity_backend']}, quality {score_info['quality_backend']}"
    else:
        scores, score_info = None, {}
        scorer_note = "did not run: no DEITA scorer configured (deita_scorer.backend = none)" if scorer is None else "ran on no rows"
        context.log.info(f"week {week}: DEITA scorer {scorer_note}")
    embeddings, embedded_now = week_embeddings(rows, week, dedup_history, embedder)
    selection = select_diverse(
        rows, scores, embeddings, SelectionConfig(threshold=config.threshold, budget=config.budget, score_floor=config.score_floor)
    )
    counts = selection.counts
    drops = {r: counts[r] for r in SelectionReason.ALL if counts[r]}
    kept = selection.kept
    evol = kept["evol_score"]
    yield dg.MaterializeResult(
        asset_key="scored_feedback",
        value=kept,
        metadata={
            "rows_in": counts["rows_in"],
            "rows_kept": counts["kept"],
            "rows_dropped": counts["rows_in"] - counts["kept"],
            **{f"dropped/{r}": counts[r] for r in SelectionReason.ALL},
            "dropped_by_reason": counts_table(drops, "reason"),
            **label_balance(kept["label"]),
            "deita_scorer": dg.MetadataValue.text(scorer_note),
            "scoring_seconds": round(time.monotonic() - started, 2) if scores is not None else 0.0,
            "evol_score_mean": dg.MetadataValue.float(float(evol.mean())) if evol.notna().any() else dg.MetadataValue.text("not scored"),
            "complexity_mean": dg.MetadataValue.float(float(kept["complexity"].mean())) if evol.notna().any() else dg.MetadataValue.text("not scored"),
            "quality_mean": dg.MetadataValue.float(float(kept["quality"].mean())) if evol.notna().any() else dg.MetadataValue.text("not scored"),
            "selection": dg.MetadataValue.json({k: v for k, v in selection.info.items() if k != "classes"} | {"classes": selection.info.get("classes", {})}),
            "rows_embedded_now": embedded_now,
            **frame_metadata(kept, ["row_id", "evol_score", "label", "prompt", "completion"]),
        },
    )
    yield dg.MaterializeResult(
        asset_key="scored_feedback_dropped",
        value=selection.dropped,
        metadata={**frame_metadata(selection.dropped, ["row_id", "reason", "similar_to", "evol_score", "prompt"])},
    )
    yield rows_accounted("scored_feedback", account_rows(rows["row_id"], kept["row_id"], selection.dropped))
