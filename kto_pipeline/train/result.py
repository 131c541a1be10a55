"""What a training returns (`TrainResult`), and the metrics it reads from the Trainer's logs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FINAL_METRIC_KEYS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "kl",
    "grad_norm",
    "logps/chosen",
    "logps/rejected",
    "entropy",
    "learning_rate",
    "num_tokens",
)


@dataclass
class TrainResult:
    output_dir: str
    kind: str  # "lora" | "full"
    base_model: str
    init_from: str | None
    global_step: int
    resumed_from_step: int | None
    collapsed: bool
    health: dict[str, Any]  # {"healthy", "problems", "collapse": {...}, "reference_check": {...}}
    final_metrics: dict[str, float]
    initial_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    data: dict[str, Any]
    timings: dict[str, float]  # seconds: prepare, setup (incl. reference precompute), train, save, total
    fingerprint: str
    reused: bool = False  # True when output_dir already held this exact training
    log_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return bool(self.health.get("healthy"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def initial_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    for entry in log_history:
        if "loss" in entry and ("rewards/chosen" in entry or "rewards/rejected" in entry):
            return {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}
    return {}


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last value of each key among train logs, plus the trainer's summary (train_loss…)."""
    out: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith("eval_") or not isinstance(value, (int, float)):
                continue
            if key in FINAL_METRIC_KEYS or key in ("train_loss", "train_runtime", "train_samples_per_second", "epoch"):
                out[key] = float(value)
    return out


def log_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    train_logs = [e for e in log_history if "loss" in e and "eval_loss" not in e]
    losses = [float(e["loss"]) for e in train_logs]
    return {
        "n_logs": len(log_history),
        "n_train_logs": len(train_logs),
        "first": train_logs[0] if train_logs else None,
        "last": train_logs[-1] if train_logs else None,
        "loss_min": min(losses) if losses else None,
        "loss_max": max(losses) if losses else None,
    }
