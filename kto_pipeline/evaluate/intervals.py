"""Bootstrap confidence intervals of a mean (scipy's percentile bootstrap), seeded.

Every answer-based signal is a mean over held-out prompts of a per-prompt score (a judge's
verdict, "closer to the user's edit", "reproduced a thumbs-down answer"), so one helper gives
each its interval. The percentile method, not scipy's default BCa: these scores are often all
equal (every pair a tie), where BCa returns NaN and the percentile interval is the point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over `n` scores and its bootstrap interval (NaN bounds when n < 2)."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def known(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def describe(self, digits: int = 3) -> str:
        if self.n == 0:
            return "n/a (no data)"
        if not self.known:
            return f"{self.estimate:.{digits}f} (n={self.n}, too few for an interval)"
        return (
            f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] "
            f"({self.confidence:.0%} CI, n={self.n})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_mean(
    values: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of `values` with a seeded percentile-bootstrap interval.

    >>> bootstrap_mean([1.0, 0.0, 0.5, 1.0], seed=0).estimate
    0.625
    """
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=np.float64)
    nan = float("nan")
    if data.size == 0:
        return Interval(nan, nan, nan, 0, confidence)
    estimate = float(data.mean())
    if data.size < 2:
        return Interval(estimate, nan, nan, 1, confidence)
    result = bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high), int(data.size), confidence)
