"""The evaluation report: Markdown text (metrics table, decision, data counts) written with its plots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kto_pipeline.evaluate.answers import AnswerEvaluation
from kto_pipeline.evaluate.compare import EvalResult
from kto_pipeline.evaluate.constants import ROLE_CHAMPION, ROLES
from kto_pipeline.evaluate.formatting import format_number, role_label
from kto_pipeline.evaluate.plots import plot_metric_bars, plot_reward_distributions
from kto_pipeline.evaluate.promotion import PromotionDecision
from kto_pipeline.evaluate.report_answers import render_answers

REPORT_FILE = "eval_report.md"
REWARDS_PLOT = "reward_distributions.png"
METRICS_PLOT = "metrics.png"


@dataclass(frozen=True)
class ReportArtifacts:
    """What `write_report` wrote: the Markdown text and the paths of the report and its plots."""

    markdown: str
    markdown_path: Path
    plots: dict[str, Path]  # "rewards", "metrics" → PNG paths


_TABLE_COLUMNS = (
    ("reward_accuracy", "accuracy"),
    ("desirable_accuracy", "acc. desirable"),
    ("undesirable_accuracy", "acc. undesirable"),
    ("reward_desirable_mean", "reward desirable"),
    ("reward_undesirable_mean", "reward undesirable"),
    ("margin", "margin"),
    ("kl", "KL (z0)"),
    ("loss", "KTO loss"),
    ("logps_desirable_mean", "logp desirable"),
    ("logps_undesirable_mean", "logp undesirable"),
)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _external_names(result: EvalResult) -> list[str]:
    return sorted({name for metrics in result.external.values() for name in metrics})


def render_markdown(
    result: EvalResult,
    decision: PromotionDecision,
    plots: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
    answers: AnswerEvaluation | None = None,
) -> str:
    """The report text; `plots` maps plot keys to paths relative to the report."""
    week = result.week or "unknown week"
    lines = [f"# {title or f'KTO evaluation: week {week}'}", ""]
    verdict = "PROMOTE" if decision.promote else "DO NOT PROMOTE"
    lines += [
        f"**Decision: {verdict}** the candidate (compared against the {decision.baseline_role}).",
        "",
        *[f"- {'✅' if ok else '❌'} {_md_cell(text)}" for ok, text in decision.lines()],
        "",
        *render_answers(answers),
        "## Metrics",
        "",
        f"Rewards are β·(log π − log π_base) with β = {result.beta:g}, so the base scores 0 reward and "
        f"0.5 accuracy by construction. z0 (KL) is estimated per block of {result.batch_size} rows from "
        f"TRL's mismatched pairs and clamped at 0; the KTO loss uses λD = {result.weights.desirable:g}, "
        f"λU = {result.weights.undesirable:g}; max_length = {result.max_length}; {result.data_format} rows.",
        "",
    ]
    ext = _external_names(result)
    header = ["model", "reference", *[label for _, label in _TABLE_COLUMNS], *ext]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for role in ROLES:
        if role not in result.models:
            continue
        m = result.models[role]
        cells = [role_label(result, role), f"`{_md_cell(m.ref)}`"]
        cells += [format_number(getattr(m, name)) for name, _ in _TABLE_COLUMNS]
        cells += [format_number(result.external.get(role, {}).get(name)) for name in ext]
        lines.append("| " + " | ".join(cells) + " |")
    if ROLE_CHAMPION not in result.models:
        lines += ["", "No champion yet: the candidate is compared against the base."]
    lines += [
        "",
        "## Data",
        "",
        "| held-out rows | count |",
        "|---|---|",
        f"| desirable | {result.n_desirable} |",
        f"| undesirable | {result.n_undesirable} |",
        f"| total evaluated | {result.n_rows} |",
        f"| dropped (prompt ≥ max_length tokens) | {result.n_dropped} |",
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        captions = {"rewards": "Reward distributions per model and class", "metrics": "Main metrics per model"}
        for key, rel in plots.items():
            lines += [f"![{captions.get(key, key)}]({rel})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(
    result: EvalResult,
    decision: PromotionDecision,
    folder: str | Path,
    *,
    title: str | None = None,
    answers: AnswerEvaluation | None = None,
) -> ReportArtifacts:
    """Write `eval_report.md` (with the answer sections when `answers` is given) and its PNG plots
    into `folder`; return the text and paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = {
        "rewards": plot_reward_distributions(result, folder / REWARDS_PLOT),
        "metrics": plot_metric_bars(result, folder / METRICS_PLOT),
    }
    markdown = render_markdown(result, decision, {k: p.name for k, p in plots.items()}, title=title, answers=answers)
    path = folder / REPORT_FILE
    path.write_text(markdown, encoding="utf-8")
    return ReportArtifacts(markdown=markdown, markdown_path=path, plots=plots)
