"""`deduplicated_feedback`: contradictions, exact, MinHash and SemDeDup duplicates removed,
within the week and against earlier weeks; the removed rows, with reasons, beside it."""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.ingest import CURATION
from assets.metadata import counts_table, frame_metadata, label_balance
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.dedup import DedupConfig, DedupReason, deduplicate, embed_rows
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder


class DedupSettings(dg.Config):
    minhash_threshold: float = Field(default=0.8, description="Jaccard similarity from which two rows are near duplicates")
    num_perm: int = Field(default=128, description="MinHash permutations (changing it invalidates the stored history)")
    shingle_size: int = Field(default=5, description="Words per shingle (changing it invalidates the stored history)")
    semdedup_eps: float = Field(default=0.05, description="Rows with cosine similarity >= 1 - eps are semantic duplicates")
    seed: int = Field(default=0, description="k-means seed")


@dg.multi_asset(
    outs={
        "deduplicated_feedback": dg.AssetOut(group_name=CURATION, description="redacted_feedback without duplicates or contradictory labels, also against earlier weeks."),
        "deduplicated_feedback_dropped": dg.AssetOut(group_name=CURATION, description="The rows deduplication removed, each with its reason and the row it duplicates."),
    },
    partitions_def=feedback_weeks,
    check_specs=[rows_accounted_spec("deduplicated_feedback")],
)
def deduplicated_feedback(
    context: dg.AssetExecutionContext,
    config: DedupSettings,
    redacted_feedback: pd.DataFrame,
    embedder: Embedder,
    dedup_history: DedupHistoryStore,
):
    week = context.partition_key
    model = embedder.get()
    dedup_config = DedupConfig(
        minhash_threshold=config.minhash_threshold, num_perm=config.num_perm, shingle_size=config.shingle_size,
        semdedup_eps=config.semdedup_eps, seed=config.seed, embedding_model=model.name,
    )
    history, history_weeks = dedup_history.load(week)
    result = deduplicate(redacted_feedback, lambda rows: embed_rows(rows, model.embed), history, dedup_config)
    history_file = dedup_history.save(week, result.week_history)
    counts = result.counts
    drops = {r: counts[r] for r in DedupReason.ALL if counts[r]}
    context.log.info(f"week {week}: {counts['rows_in']} rows, {counts['kept']} kept; dropped {drops}; compared with {len(history_weeks)} earlier weeks")
    yield dg.MaterializeResult(
        asset_key="deduplicated_feedback",
        value=result.kept,
        metadata={
            "rows_in": counts["rows_in"],
            "rows_kept": counts["kept"],
            "rows_dropped": counts["rows_in"] - counts["kept"],
            **{f"dropped/{r}": counts[r] for r in DedupReason.ALL},
            "dropped_by_reason": counts_table(drops, "reason"),
            **label_balance(result.kept["label"]),
            "earlier_weeks": dg.MetadataValue.text(", ".join(history_weeks) or "none"),
            "history_rows": result.info.get("history_rows", 0),
            "rows_embedded": result.info.get("rows_embedded", 0),
            "embedding_model": dg.MetadataValue.text(model.name),
            "semdedup_clusters": result.info.get("semdedup_clusters", 0),
            "lsh_bands": result.info.get("lsh_bands", 0),
            "history_file": dg.MetadataValue.path(history_file),
            **frame_metadata(result.kept, ["row_id", "prompt", "completion", "label", "signal"]),
        },
    )
    yield dg.MaterializeResult(
        asset_key="deduplicated_feedback_dropped",
        value=result.dropped,
        metadata={**frame_metadata(result.dropped, ["row_id", "reason", "duplicate_of", "prompt", "completion", "label"])},
    )
    yield rows_accounted("deduplicated_feedback", account_rows(redacted_feedback["row_id"], result.kept["row_id"], result.dropped))
