"""The promotion gate: the implicit-reward check, the answer-based signals and the collapse check.

The implicit-reward check (no watched metric regresses beyond its tolerance) reads log-prob
ratios only, so a candidate that writes worse answers can pass it; the answer rules read the
generated answers (`answers.AnswerEvaluation`) and block on evidence, an interval that
excludes "no worse": the judge's win rate significantly below one half, the candidate
significantly farther from users' edits, or significantly more thumbs-down answers repeated.
A signal that could not be measured (no judge, no edits in the held-out rows, too few pairs
for an interval) is reported as skipped, unless the policy requires it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kto_pipeline.evaluate.constants import ROLE_CANDIDATE
from kto_pipeline.evaluate.formatting import format_number
from kto_pipeline.evaluate.intervals import Interval

if TYPE_CHECKING:
    from kto_pipeline.evaluate.answers import AnswerEvaluation
    from kto_pipeline.evaluate.compare import EvalResult

DEFAULT_METRIC = "reward_accuracy"
DEFAULT_TOLERANCE = 0.01

# A delta this close to the tolerance is a float artefact (0.59 − 0.60 = −0.0100000…09), not a regression.
_TOLERANCE_SLACK = 1e-12


@dataclass(frozen=True)
class MetricRule:
    """A watched metric: how far the candidate may fall behind the baseline on it."""

    name: str = field(metadata={"help": "The metric: any `ModelMetrics` scalar, or an external metric name."})
    tolerance: float = field(
        default=DEFAULT_TOLERANCE,
        metadata={"help": "Largest regression (absolute) against the baseline that still passes."},
    )
    higher_is_better: bool = field(
        default=True, metadata={"help": "Whether a larger value is better (False for e.g. `loss`)."}
    )
    required: bool = field(
        default=True,
        metadata={"help": "Fail when the metric is missing; False skips the rule instead of failing."},
    )


@dataclass(frozen=True)
class PromotionPolicy:
    """Promote iff every check passes: the implicit-reward metrics, the answer signals, no collapse.

    Parameters of the implicit-reward check: `metric`, `tolerance`, `higher_is_better`, `extra`.
    Parameters of the answer checks: `min_win_rate_upper`, `require_judge`,
    `min_edit_closer_upper`, `max_reproduction_increase`. Setting a bound to its "off" value
    (0, 0 and 1 respectively) turns that rule off.
    """

    metric: str = field(
        default=DEFAULT_METRIC,
        metadata={"help": "The main watched metric (any `ModelMetrics` scalar, or an external metric name)."},
    )
    tolerance: float = field(
        default=DEFAULT_TOLERANCE,
        metadata={"help": "Largest regression (absolute) of the main metric that still promotes."},
    )
    higher_is_better: bool = field(default=True, metadata={"help": "Whether a larger main metric is better."})
    extra: tuple[MetricRule, ...] = field(
        default=(),
        metadata={
            "help": "More rules, e.g. `MetricRule('loss', 0.02, higher_is_better=False)` or "
            "`MetricRule('oracle_accuracy', 0.02)` for a metric the caller adds to the result."
        },
    )

    min_win_rate_upper: float = field(
        default=0.5,
        metadata={
            "help": "Block when the upper bound of the judge's win-rate interval is below this (0.5: the candidate "
            "loses to the baseline significantly more often than it wins); 0 turns the rule off"
        },
    )
    require_judge: bool = field(
        default=False, metadata={"help": "Block when no judge verdict is available (no judge configured, all junk)"}
    )
    min_edit_closer_upper: float = field(
        default=0.5,
        metadata={
            "help": "Block when the upper bound of the share of edited records where the candidate is closer to the "
            "user's edit than the baseline (ties half) is below this; 0 turns the rule off"
        },
    )
    block_unchanged: bool = field(
        default=True,
        metadata={
            "help": "Block a candidate indistinguishable from the baseline: the same reward on every held-out row "
            "and, when answers were generated, the same answer to every prompt (training did not move the model: "
            "promoting it changes nothing and hides a broken run)"
        },
    )
    max_reproduction_increase: float = field(
        default=0.0,
        metadata={
            "help": "Block when the lower bound of the change (candidate − baseline) in the share of held-out "
            "thumbs-down completions reproduced is above this; 1 turns the rule off"
        },
    )

    def rules(self) -> tuple[MetricRule, ...]:
        return (MetricRule(self.metric, self.tolerance, self.higher_is_better), *self.extra)


@dataclass(frozen=True)
class SignalCheck:
    """One answer rule applied: the signal's interval, the bound it was held to, the verdict."""

    name: str
    interval: Interval | None
    rule: str
    passed: bool
    skipped: bool = False
    note: str = ""

    def describe(self) -> str:
        if self.skipped:
            return f"{self.name}: {self.note or 'not measured'}: skipped"
        value = self.interval.describe() if self.interval is not None else self.note or "not measured"
        return f"{self.name}: {value}; {self.rule}: {'pass' if self.passed else 'FAIL'}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = self.interval.to_dict() if self.interval is not None else None
        return out


@dataclass(frozen=True)
class MetricCheck:
    """One rule applied: the two values compared, the delta, and whether it passed."""

    name: str
    value: float | None
    baseline_value: float | None
    delta: float | None
    tolerance: float
    higher_is_better: bool
    passed: bool
    skipped: bool = False

    def describe(self, baseline_role: str) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        if self.value is None or self.baseline_value is None:
            missing = "candidate" if self.value is None else baseline_role
            verdict = "skipped (optional)" if self.skipped else "FAIL"
            return f"{self.name}: missing for the {missing}: {verdict}"
        return (
            f"{self.name}: {format_number(self.value)} vs {baseline_role} {format_number(self.baseline_value)} "
            f"(delta {format_number(self.delta, signed=True)}, tolerance {format_number(self.tolerance)}, "
            f"{direction}): {'pass' if self.passed else 'FAIL'}"
        )


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict and its checks; `reasons` gives one line per check plus the collapse check."""

    promote: bool
    baseline_role: str
    checks: tuple[MetricCheck, ...]
    collapsed: bool
    collapse_reason: str | None
    signals: tuple[SignalCheck, ...] = ()

    def lines(self) -> list[tuple[bool, str]]:
        """(passed, text) per check: the metric rules, the answer rules, then the collapse check."""
        out = [(c.passed, c.describe(self.baseline_role)) for c in self.checks]
        out += [(s.passed, s.describe()) for s in self.signals]
        if self.collapsed:
            out.append((False, f"training collapsed: {self.collapse_reason or 'no reason given'}: FAIL"))
        else:
            out.append((True, "training did not collapse: pass"))
        return out

    @property
    def reasons(self) -> list[str]:
        return [text for _, text in self.lines()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "baseline": self.baseline_role,
            "collapsed": self.collapsed,
            "collapse_reason": self.collapse_reason,
            "checks": [asdict(c) for c in self.checks],
            "signals": [s.to_dict() for s in self.signals],
            "reasons": self.reasons,
        }


def _check_rule(rule: MetricRule, value: float | None, baseline: float | None) -> MetricCheck:
    if value is None or baseline is None:
        return MetricCheck(
            rule.name,
            value,
            baseline,
            None,
            rule.tolerance,
            rule.higher_is_better,
            passed=not rule.required,
            skipped=not rule.required,
        )
    delta = value - baseline
    if math.isnan(delta):
        passed = False
    elif rule.higher_is_better:
        passed = delta >= -(rule.tolerance + _TOLERANCE_SLACK)
    else:
        passed = delta <= rule.tolerance + _TOLERANCE_SLACK
    return MetricCheck(rule.name, value, baseline, delta, rule.tolerance, rule.higher_is_better, passed)


def _upper_at_least(name: str, interval: Interval | None, bound: float, missing: str, required: bool) -> SignalCheck:
    rule = f"blocks when the upper bound is below {bound:g}"
    if interval is None or not interval.known:
        note = missing if interval is None else f"{interval.describe()}"
        return SignalCheck(name, interval, rule, passed=not required, skipped=not required, note=note)
    return SignalCheck(name, interval, rule, passed=interval.high >= bound)


def answer_checks(answers: AnswerEvaluation | None, policy: PromotionPolicy) -> tuple[SignalCheck, ...]:
    """The policy's answer rules applied to `answers` (rules set to their off value are left out)."""
    judged = answers.win_rate if answers is not None else None
    out = []
    if policy.min_win_rate_upper > 0 or policy.require_judge:
        missing = "no judge configured" if answers is None or answers.judgement is None else "no valid verdict"
        out.append(_upper_at_least("judge win rate", judged, policy.min_win_rate_upper, missing, policy.require_judge))
    if policy.min_edit_closer_upper > 0:
        edit = answers.edit.closer if answers is not None and answers.edit is not None else None
        out.append(
            _upper_at_least(
                "closer to users' edits", edit, policy.min_edit_closer_upper, "no held-out record with an edit", False
            )
        )
    if policy.max_reproduction_increase < 1:
        change = answers.reproduction.change if answers is not None and answers.reproduction is not None else None
        rule = f"blocks when the lower bound is above {policy.max_reproduction_increase:+g}"
        name = "thumbs-down answers reproduced (candidate − baseline)"
        if change is None or not change.known:
            note = "no held-out thumbs-down completion" if change is None else change.describe()
            out.append(SignalCheck(name, change, rule, passed=True, skipped=True, note=note))
        else:
            out.append(SignalCheck(name, change, rule, passed=change.low <= policy.max_reproduction_increase))
    return tuple(out)


def unchanged_check(result: EvalResult, answers: AnswerEvaluation | None) -> SignalCheck:
    """Whether the candidate is the baseline again: exactly the same per-row rewards (log-prob
    ratios to the base, so equal only for the same weights in practice) and the same answers."""
    cand, base = result.models.get(ROLE_CANDIDATE), result.models.get(result.baseline_role)
    rule = "blocks a candidate identical to the baseline"
    if cand is None or base is None or not cand.rewards:
        return SignalCheck("changed from the baseline", None, rule, passed=True, skipped=True, note="no rewards")
    same = cand.rewards == base.rewards
    if answers is not None:
        same = same and answers.answers[ROLE_CANDIDATE] == answers.answers[answers.baseline_role]
    note = "identical rewards on every held-out row" + (" and identical answers" if answers is not None else "")
    return SignalCheck("changed from the baseline", None, rule, passed=not same, note=note if same else "changed")


def decide_promotion(
    result: EvalResult,
    policy: PromotionPolicy | None = None,
    *,
    collapsed: bool = False,
    collapse_reason: str | None = None,
    external: Mapping[str, Mapping[str, float]] | None = None,
    answers: AnswerEvaluation | None = None,
) -> PromotionDecision:
    """Promote the candidate iff no watched metric regresses beyond its tolerance against the
    champion (the base when there is none), no answer rule blocks (see `answer_checks`), and
    training did not collapse.

    `external` ({role: {metric: value}}, e.g. a simulator's oracle accuracy) overlays
    `result.external` for this decision only; `result` is not modified (add them with
    `result.add_external` to have the report table show them too).
    """
    policy = policy or PromotionPolicy()
    baseline = result.baseline_role

    def value(role: str, name: str) -> float | None:
        overlay = (external or {}).get(role, {})
        return float(overlay[name]) if name in overlay else result.metric(role, name)

    checks = tuple(
        _check_rule(rule, value(ROLE_CANDIDATE, rule.name), value(baseline, rule.name)) for rule in policy.rules()
    )
    signals = answer_checks(answers, policy)
    if policy.block_unchanged:
        signals = (*signals, unchanged_check(result, answers))
    promote = all(c.passed for c in (*checks, *signals)) and not collapsed
    return PromotionDecision(promote, baseline, checks, collapsed, collapse_reason if collapsed else None, signals)
