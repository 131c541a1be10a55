"""The report's answer sections: each answer signal with its interval, and sample answers side by side."""

from __future__ import annotations

from kto_pipeline.evaluate.answers import AnswerEvaluation
from kto_pipeline.evaluate.constants import ROLE_CANDIDATE
from kto_pipeline.evaluate.intervals import Interval

_MAX_CELL = 300  # characters of an answer shown in the side-by-side table


def _cell(text: str, limit: int = _MAX_CELL) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if text.strip() else "*(empty)*"


def _interval(interval: Interval | None) -> str:
    return interval.describe() if interval is not None else "n/a"


def render_answers(answers: AnswerEvaluation | None) -> list[str]:
    """Markdown lines of the "Answers" and "Sample answers" sections."""
    lines = ["## Answers", ""]
    if answers is None:
        return [*lines, "No answers were generated (answer evaluation is off, or no held-out prompts).", ""]
    cfg, base = answers.config, answers.baseline_role
    sampling = "greedy" if cfg.temperature <= 0 else f"T = {cfg.temperature:g}, top-p = {cfg.top_p:g}"
    lines += [
        f"The candidate and the {base} answered {len(answers.prompts)} distinct held-out prompts "
        f"({sampling}, at most {cfg.max_new_tokens} new tokens, {cfg.backend}, seed {cfg.seed}). Intervals are "
        f"{cfg.confidence:.0%} percentile-bootstrap intervals over prompts ({cfg.bootstrap_resamples} resamples).",
        "",
        "| signal | estimate [interval] | detail |",
        "|---|---|---|",
    ]
    j = answers.judgement
    if j is None:
        lines.append("| judge win rate | n/a | no judge configured |")
    else:
        identical = sum(p.identical for p in j.pairs)
        lines.append(
            f"| judge win rate of the candidate (ties half) | {_interval(j.win_rate)} | judge `{_cell(j.judge)}`; "
            f"both orders asked: {j.calls} calls, {j.junk} without a verdict, {j.inconsistent} pairs whose orders "
            f"disagree; {identical} identical answer pairs counted as ties |"
        )
    e = answers.edit
    if e is None:
        lines.append("| closer to users' edits | n/a | no held-out record with an edit |")
    else:
        lines.append(
            f"| closer to users' edits (ties half) | {_interval(e.closer)} | mean similarity to the edit: "
            f"candidate {e.candidate_similarity:.3f}, {base} {e.baseline_similarity:.3f} |"
        )
    r = answers.reproduction
    if r is None:
        lines.append("| thumbs-down answers reproduced | n/a | no held-out thumbs-down completion |")
    else:
        per_role = "; ".join(f"{role} {_interval(i)}" for role, i in r.by_role.items())
        lines.append(
            f"| thumbs-down answers reproduced, candidate − {base} | {_interval(r.change)} | {per_role} "
            f"(similarity ≥ {r.threshold:g}) |"
        )
    samples = answers.samples()
    lines += ["", "## Sample answers", ""]
    if not samples:
        return [*lines, "No samples.", ""]
    lines += [f"| prompt | {base} | candidate | verdict |", "|---|---|---|---|"]
    for s in samples:
        lines.append(
            f"| {_cell(s['prompt'], 200)} | {_cell(s[base])} | {_cell(s[ROLE_CANDIDATE])} | {_cell(s['verdict'])} |"
        )
    return [*lines, ""]
