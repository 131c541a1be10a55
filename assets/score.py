"""`scored_feedback`: DEITA complexity and quality scores and DEITA's diversity-aware selection;
the rows the selection left out, with reasons, beside it."""

import time

import dagster as dg
import pandas as pd

from assets.kept_and_dropped import emit_kept_and_dropped, kept_and_dropped_asset
from assets.metadata import counts_table, frame_metadata, label_balance
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.dedup import embed_rows
from kto_pipeline.curate.select import SelectionConfig, SelectionReason, select_diverse
from kto_pipeline.curate.stored_embeddings import stored_or_fresh_embeddings
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.library_config import config_from
from resources.ray_cluster import RayCluster
from resources.scorer import DeitaScorerResource

SelectionSettings = config_from(
    SelectionConfig, fields=["threshold", "budget", "score_floor"], name="SelectionSettings"
)


def _scored_mean(kept: pd.DataFrame, column: str) -> dg.MetadataValue:
    if kept["evol_score"].notna().any():
        return dg.MetadataValue.float(float(kept[column].mean()))
    return dg.MetadataValue.text("not scored")


@kept_and_dropped_asset(
    "scored_feedback",
    kept="The selected rows with DEITA complexity, quality and evol_score (NaN when no scorer is configured).",
    dropped="Rows DEITA's diversity-aware selection left out: below the score floor, too similar to a better row, or over the budget.",
)
def scored_feedback(
    context: dg.AssetExecutionContext,
    config: SelectionSettings,
    deduplicated_feedback: pd.DataFrame,
    deita_scorer: DeitaScorerResource,
    embedder: Embedder,
    dedup_history: DedupHistoryStore,
    ray_cluster: RayCluster,
):
    week = context.partition_key
    rows = deduplicated_feedback
    scorer = deita_scorer.get()
    backend = ray_cluster.backend()
    if scorer is not None and backend is not None:
        scorer = backend.scorer(scorer)  # local-model scorers run their batches on the cluster
    started = time.monotonic()
    if scorer is not None and len(rows):
        result = scorer.score(rows)
        scores, score_info = result.scores, result.info
        context.log.info(
            f"week {week}: scored {len(rows)} rows ({score_info['unique_prompts']} distinct prompts) "
            f"in {time.monotonic() - started:.1f}s"
        )
        scorer_note = f"ran: complexity {score_info['complexity_backend']}, quality {score_info['quality_backend']}"
    else:
        scores = None
        scorer_note = (
            "did not run: no DEITA scorer configured (deita_scorer.backend = none)"
            if scorer is None
            else "ran on no rows"
        )
        context.log.info(f"week {week}: DEITA scorer {scorer_note}")
    embeddings, embedded_now = stored_or_fresh_embeddings(
        rows, dedup_history.load_week(week), lambda missing: embed_rows(missing, embedder.get().embed)
    )
    selection = select_diverse(rows, scores, embeddings, config.to_library())
    counts = selection.counts
    drops = {r: counts[r] for r in SelectionReason.ALL if counts[r]}
    kept = selection.kept
    yield from emit_kept_and_dropped(
        "scored_feedback",
        kept,
        {
            "rows_in": counts["rows_in"],
            "rows_kept": counts["kept"],
            "rows_dropped": counts["rows_in"] - counts["kept"],
            **{f"dropped/{r}": counts[r] for r in SelectionReason.ALL},
            "dropped_by_reason": counts_table(drops, "reason"),
            **label_balance(kept["label"]),
            "deita_scorer": dg.MetadataValue.text(scorer_note),
            "scoring_seconds": round(time.monotonic() - started, 2) if scores is not None else 0.0,
            "evol_score_mean": _scored_mean(kept, "evol_score"),
            "complexity_mean": _scored_mean(kept, "complexity"),
            "quality_mean": _scored_mean(kept, "quality"),
            "selection": dg.MetadataValue.json(
                {k: v for k, v in selection.info.items() if k != "classes"}
                | {"classes": selection.info.get("classes", {})}
            ),
            "rows_embedded_now": embedded_now,
            **frame_metadata(kept, ["row_id", "evol_score", "label", "prompt", "completion"]),
        },
        selection.dropped,
        frame_metadata(selection.dropped, ["row_id", "reason", "similar_to", "evol_score", "prompt"]),
        account_rows(rows["row_id"], kept["row_id"], selection.dropped),
    )
