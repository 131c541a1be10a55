"""`synthetic_topup`: teacher-written rows for the week's short class (distilabel), through the
same redaction and dedup rules as real rows, capped; the generated rows that did not make it
beside it."""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.kept_and_dropped import emit_kept_and_dropped, kept_and_dropped_asset
from assets.metadata import counts_table, frame_metadata
from kto_pipeline.core.accounting import account_rows
from kto_pipeline.curate.balance import SPLIT_TRAIN
from kto_pipeline.curate.dedup import DedupConfig, DedupHistory
from kto_pipeline.curate.synthesis import SynthesisConfig, generate_synthetic, plan_synthesis
from kto_pipeline.curate.synthesis.screen import empty_dropped, screen_generated, with_generation_drops
from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.generator import TeacherLLM
from resources.library_config import config_from
from resources.pii import PiiRedactor

SynthesisSettings = config_from(
    SynthesisConfig, fields=["target_ratio", "max_share", "overgeneration", "seed"], name="SynthesisSettings"
)


@kept_and_dropped_asset(
    "synthetic_topup",
    kept="Generated training rows for the week's short class (source=synthetic), redacted, deduplicated and capped.",
    dropped="Generated rows that were dropped, with the reason (empty, PII left, copied, duplicate, over the cap).",
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
    plan = plan_synthesis(train, config.to_library())
    summary = plan.summary()
    if not teacher_llm.enabled() or not plan.requests:
        why = (
            "no teacher LLM configured (teacher_llm.kind = none)"
            if not teacher_llm.enabled()
            else "no top-up needed or possible"
        )
        context.log.info(f"week {week}: no synthetic rows: {why}; plan {summary}")
        empty = train.iloc[0:0]
        yield from emit_kept_and_dropped(
            "synthetic_topup",
            empty.assign(split=pd.Series(dtype="str")),
            {
                "rows_generated": 0,
                "rows_kept": 0,
                "generator": dg.MetadataValue.text(f"did not run: {why}"),
                "plan": dg.MetadataValue.json(summary),
                **frame_metadata(empty),
            },
            empty_dropped(),
            frame_metadata(empty_dropped()),
            account_rows([], [], empty_dropped()),
        )
        return

    teacher = teacher_llm.teacher()
    # distilabel writes batch files even with its cache off: a folder of this run, removed after.
    cache_dir = Path(context.instance.storage_directory()) / "distilabel" / context.run.run_id
    try:
        generated = generate_synthetic(
            plan, teacher, cache_dir, timeout_s=teacher_llm.timeout_s, attempts=teacher_llm.attempts
        )
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    earlier, _ = dedup_history.load(week)
    this_week = dedup_history.load_week(week)
    history = DedupHistory.concat([earlier, this_week])
    model = embedder.get()
    # The settings the week was deduplicated with (its history records them), so generated rows
    # meet the same thresholds and sketches as real ones; defaults only for a history from before.
    dedup = (
        this_week.config
        if this_week is not None and this_week.config is not None
        else DedupConfig(embedding_model=model.name)
    )
    screened = screen_generated(
        generated.rows,
        plan,
        train,
        redaction=pii.config(),
        history=history,
        dedup=dedup,
        embed=model.embed,
    )
    dropped = with_generation_drops(screened.dropped, generated.dropped, plan.short_label)
    kept = screened.kept.assign(split=SPLIT_TRAIN)
    reasons = dropped["reason"].value_counts().to_dict()
    context.log.info(
        f"week {week}: {len(plan.requests)} requests to {teacher.describe()['model']}, {len(kept)} synthetic rows kept "
        f"(target {plan.n_target}); dropped {reasons}"
    )
    yield from emit_kept_and_dropped(
        "synthetic_topup",
        kept,
        {
            "generator": dg.MetadataValue.text(f"ran: {teacher.kind} {teacher.model}"),
            "short_class": dg.MetadataValue.text(
                {True: "desirable", False: "undesirable", None: "none"}[plan.short_label]
            ),
            "rows_requested": len(plan.requests),
            "rows_generated": len(generated.rows),
            "rows_kept": len(kept),
            "rows_dropped": len(dropped),
            "target": plan.n_target,
            "dropped_by_reason": counts_table(reasons, "reason"),
            "plan": dg.MetadataValue.json(summary),
            "dedup_settings": dg.MetadataValue.json(dedup.to_dict()),
            "generation_seconds": round(float(generated.stats.get("timings", {}).get("wall_s", 0.0)), 2),
            **frame_metadata(kept, ["row_id", "label", "signal", "prompt", "completion"]),
        },
        dropped,
        frame_metadata(dropped),
        # By request: each request the teacher got is a kept row or a drop (failed generations too).
        account_rows([r.row_id for r in plan.requests], kept["row_id"], dropped),
    )
