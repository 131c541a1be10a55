"""Judge-free signals the production thumbs already allow, on generated answers.

* Closeness to the user's edit: for a held-out record whose user rewrote the answer, is the
  candidate's answer closer to that rewrite than the baseline's? Closeness is rapidfuzz's
  normalised Levenshtein similarity (1 = identical) after whitespace and case folding: chrF
  would need sacrebleu, which the project does not ship, and for the short answers users fix
  an edit distance is what "how much would the user still have to change" means. Each record
  scores 1 (closer), 0.5 (as close) or 0 (farther); the mean is an "edit win rate" with a
  bootstrap interval, 0.5 meaning no change.
* Reproduced thumbs-down answers: the share of held-out thumbs-down completions a model gives
  again for the same prompt (exact or near-exact: similarity at least `threshold`), per
  model, and the paired change candidate − baseline with its interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kto_pipeline.evaluate.intervals import Interval, bootstrap_mean

DEFAULT_REPRODUCE_THRESHOLD = 0.95


def normalise(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def similarity(a: str, b: str) -> float:
    """Normalised Levenshtein similarity in [0, 1] of the folded texts (1 = the same text)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(normalise(a), normalise(b)))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class EditSignal:
    """Candidate vs baseline on records with a user edit: the edit win rate and mean similarities."""

    closer: Interval  # mean of 1 / 0.5 / 0 per record
    candidate_similarity: float
    baseline_similarity: float
    scores: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "closer": self.closer.to_dict(),
            "candidate_similarity": self.candidate_similarity,
            "baseline_similarity": self.baseline_similarity,
        }


def edit_signal(
    edits: Sequence[str],
    candidate: Sequence[str],
    baseline: Sequence[str],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> EditSignal:
    """Per record: 1 when the candidate's answer is closer to the user's edit than the baseline's."""
    if not len(edits) == len(candidate) == len(baseline):
        raise ValueError("edits, candidate and baseline answers must align")
    cand = [similarity(a, e) for a, e in zip(candidate, edits)]
    base = [similarity(a, e) for a, e in zip(baseline, edits)]
    scores = tuple(1.0 if c > b else 0.5 if c == b else 0.0 for c, b in zip(cand, base))
    return EditSignal(
        closer=bootstrap_mean(scores, confidence=confidence, n_resamples=n_resamples, seed=seed),
        candidate_similarity=_mean(cand),
        baseline_similarity=_mean(base),
        scores=scores,
    )


def reproduced(thumbs_down: Sequence[str], answers: Sequence[str], threshold: float) -> list[float]:
    """1.0 where the answer repeats the thumbs-down completion (similarity ≥ threshold), else 0.0."""
    if len(thumbs_down) != len(answers):
        raise ValueError("thumbs-down completions and answers must align")
    return [1.0 if similarity(a, bad) >= threshold else 0.0 for a, bad in zip(answers, thumbs_down)]


@dataclass(frozen=True)
class ReproductionSignal:
    """Share of thumbs-down completions each model reproduces, and the paired change."""

    by_role: dict[str, Interval]
    change: Interval  # candidate − baseline, per thumbs-down row
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_role": {role: i.to_dict() for role, i in self.by_role.items()},
            "change": self.change.to_dict(),
            "threshold": self.threshold,
        }


def reproduction_signal(
    thumbs_down: Sequence[str],
    answers: dict[str, Sequence[str]],
    *,
    candidate_role: str,
    baseline_role: str,
    threshold: float = DEFAULT_REPRODUCE_THRESHOLD,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> ReproductionSignal:
    flags = {role: reproduced(thumbs_down, a, threshold) for role, a in answers.items()}
    kw = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    diff = [c - b for c, b in zip(flags[candidate_role], flags[baseline_role])]
    return ReproductionSignal(
        by_role={role: bootstrap_mean(f, **kw) for role, f in flags.items()},
        change=bootstrap_mean(diff, **kw),
        threshold=threshold,
    )
