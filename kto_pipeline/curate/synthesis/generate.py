"""The plan's requests through the teacher (distilabel, in a child interpreter) into contract rows."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kto_pipeline.curate.synthesis.child import ChatGenerationRun, run_chat_generation
from kto_pipeline.curate.synthesis.config import TeacherConfig
from kto_pipeline.curate.synthesis.plan import SynthesisPlan, teacher_messages
from kto_pipeline.curate.synthesis.reasons import DROPPED_DTYPES, SynthesisReason
from kto_pipeline.ingest.contract import (
    ROW_DTYPES,
    SIGNAL_SYNTHETIC_IMPROVED,
    SOURCE_SYNTHETIC,
    frame_from_records,
    metadata_json,
)

__all__ = ["GenerationResult", "build_synthetic_rows", "generate_synthetic"]

logger = logging.getLogger(__name__)

# Generated rows do not come from a dump: dump is null and line 0 (line is int64, not nullable;
# 0 is also what the quarantine schema uses for "not a record of a dump").
SYNTHETIC_LINE = 0


@dataclass
class GenerationResult:
    rows: pd.DataFrame  # ROW_DTYPES, plan order
    dropped: pd.DataFrame  # DROPPED_DTYPES
    stats: dict[str, Any]


def build_synthetic_rows(
    plan: SynthesisPlan, generations: Mapping[str, str | None], teacher_model: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract rows (and drops, with reasons) from {request row_id: generated text}.

    Text is stripped of surrounding whitespace; an empty result, a failed generation (None)
    or a request that never came back is dropped and counted, never silently lost.
    """
    rows, dropped = [], []
    for req in plan.requests:
        text = generations.get(req.row_id)
        reason = None
        if req.row_id not in generations:
            reason, detail = SynthesisReason.MISSING_OUTPUT, "no output for this request"
        elif text is None:
            reason, detail = SynthesisReason.GENERATION_FAILED, "the LLM returned no generation"
        elif not text.strip():
            reason, detail = SynthesisReason.EMPTY_GENERATION, f"{len(text)} whitespace characters"
        if reason is not None:
            dropped.append(
                {
                    "row_id": req.row_id,
                    "source_row_id": req.source_row_id,
                    "generation_index": req.generation_index,
                    "reason": reason,
                    "detail": detail,
                }
            )
            continue
        rows.append(
            {
                "row_id": req.row_id,
                "record_id": req.row_id,
                "week": req.week,
                "timestamp": req.timestamp,
                "prompt": req.prompt,
                "prompt_messages": req.prompt_messages,
                "completion": text.strip(),
                "label": plan.signal == SIGNAL_SYNTHETIC_IMPROVED,
                "signal": plan.signal,
                "source": SOURCE_SYNTHETIC,
                # Kept from the source row so conversation-grouped splits and per-user weighting
                # treat a synthetic row like the row it came from.
                "conversation_id": req.conversation_id,
                "user_id": req.user_id,
                "model_version": teacher_model,  # the model that wrote the completion
                "metadata": metadata_json(
                    {
                        "teacher_model": teacher_model,
                        "source_row_id": req.source_row_id,
                        "source_record_id": req.source_record_id,
                        "source_model_version": req.source_model_version,
                        "generation_index": req.generation_index,
                    }
                ),
                "dump": None,
                "line": SYNTHETIC_LINE,
            }
        )
    return frame_from_records(rows, ROW_DTYPES), frame_from_records(dropped, DROPPED_DTYPES)


def generate_synthetic(
    plan: SynthesisPlan,
    teacher: TeacherConfig,
    cache_dir: str | os.PathLike,
    *,
    log_level: str = "WARNING",
    keep_cache: bool = False,
    timeout_s: float | None = None,
    attempts: int = 1,
) -> GenerationResult:
    """Generate the plan's requests with the teacher through distilabel; contract rows back.

    `cache_dir`: where distilabel may write (the Dagster run's storage); see
    `run_chat_generation` for how the run is isolated, what `log_level` controls, and how
    `timeout_s` and `attempts` end and restart a run that hangs.
    """
    records = [
        {"request_id": r.row_id, "messages": teacher_messages(r, plan.signal or "", plan.config)} for r in plan.requests
    ]
    run = ChatGenerationRun({}, {"wall_s": 0.0})
    if records:
        logger.info("synthetic top-up: %d requests to %s", len(records), teacher.describe())
        run = run_chat_generation(
            records,
            teacher,
            cache_dir,
            log_level=log_level,
            keep_cache=keep_cache,
            timeout_s=timeout_s,
            attempts=attempts,
        )
    rows, dropped = build_synthetic_rows(plan, run.generations, teacher.model)
    stats = {
        "n_requests": len(records),
        "n_rows": len(rows),
        "dropped": {str(k): int(v) for k, v in dropped["reason"].value_counts().sort_index().items()},
        "timings": run.timings,
        "teacher": teacher.describe(),
    }
    return GenerationResult(rows, dropped, stats)
