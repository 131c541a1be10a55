"""Recording a week's evaluation: the report where people and tools look, and the promotion.

The report (Markdown and plots) and `eval_summary.json` (its numbers and the decision, for
tools) go to the registry's report folder and into the checkpoint's `eval/` folder, so the
report travels with the checkpoint. Then the registry records the decision: a passing gate
promotes the week, a failing one withdraws an earlier promotion of it (a rerun whose gate now
fails must not leave a stale champion).
"""

from __future__ import annotations

import json

from kto_pipeline.evaluate import AnswerEvaluation, EvalResult, PromotionDecision, ReportArtifacts, write_report
from kto_pipeline.models.registry import EVAL_SUMMARY, ModelRegistry

CHECKPOINT_REPORT_DIR = "eval"  # inside the checkpoint folder


def record_evaluation(
    registry: ModelRegistry,
    week: str,
    result: EvalResult,
    decision: PromotionDecision,
    answers: AnswerEvaluation | None = None,
) -> ReportArtifacts:
    """Write `week`'s report in both places, then promote or withdraw it; returns the report
    folder's artifacts. The summary holds the answer signals too (`answers`)."""
    candidate = registry.checkpoint(week)
    if candidate is None:
        raise FileNotFoundError(f"week {week} has no finished checkpoint under {registry.checkpoint_dir(week)}")
    report_dir = registry.report_dir(week)
    artifacts = write_report(result, decision, report_dir, answers=answers)
    write_report(result, decision, candidate / CHECKPOINT_REPORT_DIR, answers=answers)  # travels with the checkpoint
    summary = json.dumps(
        {
            "result": result.to_dict(),
            "decision": decision.to_dict(),
            "answers": answers.to_dict() if answers is not None else None,
        },
        indent=1,
        sort_keys=True,
        default=str,
    )
    for folder in (report_dir, candidate / CHECKPOINT_REPORT_DIR):
        (folder / EVAL_SUMMARY).write_text(summary)
    if decision.promote:
        registry.promote(week, {"metrics": result.models["candidate"].scalars(), "decision": decision.to_dict()})
    else:
        registry.withdraw(week)
    return artifacts
