"""`synthetic_topup`: teacher-written rows for the week's short class (distilabel), through the
same redaction and dedup rules as real rows, capped; the generated rows that did not make it
beside it."""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.accounting import rows_accounted, rows_accounted_spec
from assets.ingest import CURATION
from assets.metadata import counts_table, frame_metadata
from assets.partitions import feedback_weeks
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.balance import SPLIT_TRAIN
from kto_pipeline.curate.dedup import DedupConfig, DedupHistory
from kto_pipeline.curate.synthesis import SynthesisConfig, generate_synthetic, plan_synthesis
from kto_pipeline.curate.synthesis.screen import empty_dropped, screen_generated, with_generation_drops
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.generator import TeacherLLM
from resources.pii import PiiRedactor


class SynthesisSettings(dg.Config):
    target_ratio: float = Field(default=1.0, description="Top the short class up towards majority / target_ratio")
    max_share: float = Field(default=0.25, description="Synthetic rows are at most this share of the training rows after the top-up")
    overgeneration: float = Field(default=1.25, description="Generate this × the target: redaction and dedup drop some")
    seed: int = Field(default=0, description="Picks the source prompts")


@dg.multi_asset(
    outs={
        "synthetic_topup": dg.AssetOut(group_name=CURATION, description="Generated training rows for the week's short class (source=synthetic), redacted, deduplicated and capped."),
        "synthetic_topup_dropped": dg.AssetOut(group_name=CURATION, description="Generated rows that were dropped, with the reason (empty, PII left, copied, duplicate, over the cap)."),
    },
    partitions_def=feedback_weeks,
    check_specs=[rows_accounted_spec("synthetic_topup")],
)
def synthetic_topup(
    context: dg.AssetExecutionContext,
    config: SynthesisSettings,
    balanced_feedback: pd.DataFrame,
    teacher_llm: TeacherLLM,
    pii: PiiRedactor,
    embedder: Embedder,
    dedup_history: DedupHistoryStore,
):
    week = context.partition_key
    train = balanced_feedback[balanced_feedback["split"] == SPLIT_TRAIN].drop(columns=["split"])
    plan = plan_synthesis(train, SynthesisConfig(target_ratio=config.target_ratio, max_share=config.max_share, overgeneration=config.overgeneration, seed=config.seed))
    summary = plan.summary()
    empty = train.iloc[0:0]
    if not teacher_llm.enabled() or not plan.requests:
        why = "no teacher LLM configured (teacher_llm.kind = none)" if not teacher_llm.enabled() else "no top-up needed or possible"
        context.log.info(f"week {week}: no synthetic rows: {why}; plan {summary}")
        yield dg.MaterializeResult(asset_key="synthetic_topup", value=empty.assign(split=pd.Series(dtype="str")), metadata={"rows_generated": 0, "rows_kept": 0, "generator": dg.MetadataValue.text(f"did not run: {why}"), "plan": dg.MetadataValue.json(summary), **frame_metadata(empty)})
        yield dg.MaterializeResult(asset_key="synthetic_topup_dropped", value=empty_dropped(), metadata=frame_metadata(empty_dropped()))
        yield rows_accounted("synthetic_topup", account_rows([], [], empty_dropped()))
        return

    teacher = teacher_llm.teacher()
    # distilabel writes batch files even with its cache off: a folder of this run, removed after.
    cache_dir = Path(context.instance.storage_directory()) / "distilabel" / context.run.run_id
    try:
        generated = generate_synthetic(plan, teacher, cache_dir, timeout_s=teacher_llm.timeout_s)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    earlier, _ = dedup_history.load(week)
    history = DedupHistory.concat([earlier, dedup_history.load_week(week)])
    model = embedder.get()
    screened = screen_generated(
        generated.rows, plan, train, redaction=pii.config(), history=history,
        dedup=DedupConfig(embedding_model=model.name), embed=model.embed,
    )
    dropped = with_generation_drops(screened.dropped, generated.dropped, plan.short_label)
    kept = screened.kept.assign(split=SPLIT_TRAIN)
    reasons = dropped["reason"].value_counts().to_dict()
    context.log.info(f"week {week}: {len(plan.requests)} requests to {teacher.describe()['model']}, {len(kept)} synthetic rows kept (target {plan.n_target}); dropped {reasons}")
    yield dg.MaterializeResult(
        asset_key="synthetic_topup",
        value=kept,
        metadata={
            "generator": dg.MetadataValue.text(f"ran: {teacher.kind} {teacher.model}"),
            "short_class": dg.MetadataValue.text({True: "desirable", False: "undesirable", None: "none"}[plan.short_label]),
            "rows_requested": len(plan.requests),
            "rows_generated": len(generated.rows),
            "rows_kept": len(kept),
            "rows_dropped": len(dropped),
            "target": plan.n_target,
            "dropped_by_reason": counts_table(reasons, "reason"),
            "plan": dg.MetadataValue.json(summary),
            "generation_seconds": round(float(generated.stats.get("timings", {}).get("wall_s", 0.0)), 2),
            **frame_metadata(kept, ["row_id", "label", "signal", "prompt", "completion"]),
        },
    )
    yield dg.MaterializeResult(asset_key="synthetic_topup_dropped", value=dropped, metadata=frame_metadata(dropped))
    # By request: each request the teacher got is a kept row or a drop (failed generations too).
    yield rows_accounted("synthetic_topup", account_rows([r.row_id for r in plan.requests], kept["row_id"], dropped))
