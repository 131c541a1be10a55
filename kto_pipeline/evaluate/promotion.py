"""The promotion gate: no watched metric may regress beyond its tolerance, and training must not have collapsed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kto_pipeline.evaluate.constants import ROLE_CANDIDATE
from kto_pipeline.evaluate.formatting import format_number

if TYPE_CHECKING:
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
    """Promote iff no watched metric regresses beyond its tolerance and training did not collapse."""

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

    def rules(self) -> tuple[MetricRule, ...]:
        return (MetricRule(self.metric, self.tolerance, self.higher_is_better), *self.extra)


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

    @property
    def reasons(self) -> list[str]:
        lines = [check.describe(self.baseline_role) for check in self.checks]
        if self.collapsed:
            lines.append(f"training collapsed: {self.collapse_reason or 'no reason given'}: FAIL")
        else:
            lines.append("training did not collapse: pass")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "baseline": self.baseline_role,
            "collapsed": self.collapsed,
            "collapse_reason": self.collapse_reason,
            "checks": [asdict(c) for c in self.checks],
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


def decide_promotion(
    result: EvalResult,
    policy: PromotionPolicy | None = None,
    *,
    collapsed: bool = False,
    collapse_reason: str | None = None,
    external: Mapping[str, Mapping[str, float]] | None = None,
) -> PromotionDecision:
    """Promote the candidate iff no watched metric regresses beyond its tolerance against the
    champion (the base when there is none) and training did not collapse.

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
    promote = all(c.passed for c in checks) and not collapsed
    return PromotionDecision(promote, baseline, checks, collapsed, collapse_reason if collapsed else None)
