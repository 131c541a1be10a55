"""KTO metrics of one model against the reference: rewards, per-block z0, implicit-reward accuracy and TRL's loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kto_pipeline.evaluate.constants import DEFAULT_BETA, ROLE_CANDIDATE
from kto_pipeline.evaluate.logps import ModelLogps


class KTOWeights(NamedTuple):
    """KTOConfig's desirable_weight / undesirable_weight (λD, λU)."""

    desirable: float = 1.0
    undesirable: float = 1.0


DEFAULT_WEIGHTS = KTOWeights()


@dataclass(frozen=True)
class ModelMetrics:
    """KTO metrics of one model against the base (reference), over the held-out rows.

    Rewards are β·log-ratios; `kl` is the mean over blocks of z0 in log-ratio units (TRL's
    logged `kl`); `loss` is TRL's weighted KTO loss averaged over rows (TRL's `eval_loss`).
    """

    role: str
    ref: str
    n_rows: int
    n_desirable: int
    n_undesirable: int
    reward_accuracy: float
    desirable_accuracy: float
    undesirable_accuracy: float
    reward_desirable_mean: float
    reward_undesirable_mean: float
    margin: float
    kl: float
    loss: float
    logps_desirable_mean: float
    logps_undesirable_mean: float
    rewards: tuple[float, ...] = field(default=(), repr=False)
    labels: tuple[bool, ...] = field(default=(), repr=False)

    SCALARS = (
        "reward_accuracy",
        "desirable_accuracy",
        "undesirable_accuracy",
        "reward_desirable_mean",
        "reward_undesirable_mean",
        "margin",
        "kl",
        "loss",
        "logps_desirable_mean",
        "logps_undesirable_mean",
        "n_rows",
        "n_desirable",
        "n_undesirable",
    )

    def scalars(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.SCALARS}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def block_z0(policy_kl: np.ndarray, ref_kl: np.ndarray, blocks: Sequence[slice]) -> np.ndarray:
    """z0 per row: max(0, mean log-ratio over its block's mismatched pairs), detached as in TRL."""
    z0 = np.zeros(len(policy_kl), dtype=np.float64)
    for block in blocks:
        z0[block] = max(0.0, float(np.mean(policy_kl[block] - ref_kl[block])))
    return z0


def compute_metrics(
    policy: ModelLogps,
    reference: ModelLogps,
    labels: np.ndarray,
    blocks: Sequence[slice],
    *,
    beta: float = DEFAULT_BETA,
    weights: KTOWeights = DEFAULT_WEIGHTS,
    role: str = ROLE_CANDIDATE,
    ref: str = "",
) -> ModelMetrics:
    """The KTO metrics of `policy` against `reference` (TRL's `_compute_loss`, per block)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    weights = KTOWeights(*weights)
    labels = np.asarray(labels, dtype=bool)
    logratio = policy.matched - reference.matched
    z0 = block_z0(policy.kl, reference.kl, blocks)
    # Compare log-ratio with z0 rather than β·logratio with β·z0: same order (β > 0) without
    # rounding creating or breaking ties, so the reference's all-zero rewards tie exactly.
    diff = logratio - z0
    desirable, undesirable = labels, ~labels
    correct = np.where(desirable, np.sign(diff), -np.sign(diff))  # +1 right, −1 wrong, 0 tie
    hit = (correct + 1.0) / 2.0  # ties count half
    losses = np.where(
        desirable,
        weights.desirable * (1.0 - _sigmoid(beta * diff)),
        weights.undesirable * (1.0 - _sigmoid(-beta * diff)),
    )
    rewards = beta * logratio
    reward_d, reward_u = _mean(rewards[desirable]), _mean(rewards[undesirable])
    return ModelMetrics(
        role=role,
        ref=ref,
        n_rows=int(labels.size),
        n_desirable=int(desirable.sum()),
        n_undesirable=int(undesirable.sum()),
        reward_accuracy=_mean(hit),
        desirable_accuracy=_mean(hit[desirable]),
        undesirable_accuracy=_mean(hit[undesirable]),
        reward_desirable_mean=reward_d,
        reward_undesirable_mean=reward_u,
        margin=reward_d - reward_u,
        kl=_mean(np.array([z0[b.start] for b in blocks if b.stop > b.start])),
        loss=_mean(losses),
        logps_desirable_mean=_mean(policy.matched[desirable]),
        logps_undesirable_mean=_mean(policy.matched[undesirable]),
        rewards=tuple(float(r) for r in rewards),
        labels=tuple(bool(x) for x in labels),
    )
