"""`deduplicated_feedback`: contradictions, exact, MinHash and SemDeDup duplicates removed,
within the week and against earlier weeks; the removed rows, with reasons, beside it."""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.kept_and_dropped import emit_kept_and_dropped, kept_and_dropped_asset
from assets.metadata import counts_table, frame_metadata, label_balance
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.dedup import DedupConfig, DedupReason, deduplicate, embed_rows
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.library_config import config_from
from resources.ray_cluster import RayCluster


class DedupSettings(
    config_from(
        DedupConfig,
        fields=["minhash_threshold", "num_perm", "shingle_size", "semdedup_eps", "seed"],
        name="DedupSettingsBase",
    )
):
    enabled: bool = Field(
        default=True,
        description="Off: every row passes and the week adds nothing to the cross-week history (for ablations "
        "and debugging; later weeks then cannot catch repeats of this one)",
    )


@kept_and_dropped_asset(
    "deduplicated_feedback",
    kept="redacted_feedback without duplicates or contradictory labels, also against earlier weeks.",
    dropped="The rows deduplication removed, each with its reason and the row it duplicates.",
)
def deduplicated_feedback(
    context: dg.AssetExecutionContext,
    config: DedupSettings,
    redacted_feedback: pd.DataFrame,
    embedder: Embedder,
    dedup_history: DedupHistoryStore,
    ray_cluster: RayCluster,
):
    week = context.partition_key
    if not config.enabled:
        context.log.warning(f"week {week}: deduplication is off (enabled: false); every row passes")
        dropped = redacted_feedback.iloc[:0].reset_index(drop=True)
        dropped["reason"] = pd.Series(dtype="str")
        dropped["duplicate_of"] = pd.Series(dtype="str")
        n = len(redacted_feedback)
        yield from emit_kept_and_dropped(
            "deduplicated_feedback",
            redacted_feedback.reset_index(drop=True),
            {
                "rows_in": n,
                "rows_kept": n,
                "rows_dropped": 0,
                "dedup": dg.MetadataValue.text("off: nothing dropped, nothing added to the cross-week history"),
                **label_balance(redacted_feedback["label"]),
            },
            dropped,
            frame_metadata(dropped, ["row_id", "reason"]),
            account_rows(redacted_feedback["row_id"], redacted_feedback["row_id"], dropped),
        )
        return
    model = embedder.get()
    backend = ray_cluster.backend()
    # On a cluster the vectors are made by its workers (a GPU worker resolves "auto" to torch).
    encoder = backend.encoder(model) if backend else model
    history, history_weeks = dedup_history.load(week)
    result = deduplicate(
        redacted_feedback,
        lambda rows: embed_rows(rows, encoder.embed),
        history,
        config.to_library(embedding_model=encoder.name),
        signatures=backend.row_signatures() if backend else None,
    )
    history_file = dedup_history.save(week, result.week_history)
    counts = result.counts
    drops = {r: counts[r] for r in DedupReason.ALL if counts[r]}
    context.log.info(
        f"week {week}: {counts['rows_in']} rows, {counts['kept']} kept; dropped {drops}; "
        f"compared with {len(history_weeks)} earlier weeks"
    )
    yield from emit_kept_and_dropped(
        "deduplicated_feedback",
        result.kept,
        {
            "rows_in": counts["rows_in"],
            "rows_kept": counts["kept"],
            "rows_dropped": counts["rows_in"] - counts["kept"],
            **{f"dropped/{r}": counts[r] for r in DedupReason.ALL},
            "dropped_by_reason": counts_table(drops, "reason"),
            **label_balance(result.kept["label"]),
            "earlier_weeks": dg.MetadataValue.text(", ".join(history_weeks) or "none"),
            "history_rows": result.info.get("history_rows", 0),
            "rows_embedded": result.info.get("rows_embedded", 0),
            "embedding_model": dg.MetadataValue.text(encoder.name),
            "ray_cluster": dg.MetadataValue.text(str(ray_cluster.address or "off")),
            "semdedup_clusters": result.info.get("semdedup_clusters", 0),
            "lsh_bands": result.info.get("lsh_bands", 0),
            "history_file": dg.MetadataValue.path(history_file),
            **frame_metadata(result.kept, ["row_id", "prompt", "completion", "label", "signal"]),
        },
        result.dropped,
        frame_metadata(result.dropped, ["row_id", "reason", "duplicate_of", "prompt", "completion", "label"]),
        account_rows(redacted_feedback["row_id"], result.kept["row_id"], result.dropped),
    )
