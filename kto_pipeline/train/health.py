"""Training health: collapse detection, the reference check, and the live-log callback.

A `TrainerCallback` forwards every log to `on_log` and watches for collapse: desirable and
undesirable rewards falling together (with the desirable reward below zero) for
`collapse_patience` consecutive logs, or a non-finite loss. It stops training
(`control.should_training_stop`), and the result and manifest say so with the evidence. The
reference check reads the first log, taken at the initial weights, where the policy is the
reference: rewards there must be ~0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

LogCallback = Callable[[dict[str, Any]], None]


class CollapseDetector:
    """Flags "desirable and undesirable rewards fall together" (the notes' LR-too-high sign).

    A train log counts as falling when both `rewards/chosen` and `rewards/rejected` are more than
    `min_drop` nats of log-ratio (β·min_drop in reward units) below the previous train log and
    `rewards/chosen` is negative (healthy runs can let both drift down while the desirable
    reward stays above the reference). `patience` consecutive falling logs mean collapse. A
    non-finite loss or reward is divergence, at once. The floor is in log-ratio units so one
    setting serves β = 0.1 and β = 2: the first steps of a healthy run often let both rewards
    slip by hundredths of a nat per log, a collapse drops them by tenths or more.
    """

    def __init__(self, patience: int = 3, min_drop: float = 0.0, beta: float = 1.0) -> None:
        self.patience = patience
        self.min_drop = min_drop * beta
        self.previous: dict[str, float] | None = None
        self.streak: list[dict[str, float]] = []
        self.collapsed = False
        self.diverged = False
        self.evidence: list[dict[str, float]] = []

    def update(self, step: int, logs: Mapping[str, Any]) -> bool:
        """Feed one log; True once the run is unhealthy (it stays so)."""
        if self.collapsed or self.diverged:
            return True
        values = {
            k: logs[k] for k in ("loss", "rewards/chosen", "rewards/rejected") if isinstance(logs.get(k), (int, float))
        }
        if any(not math.isfinite(v) for v in values.values()):
            self.diverged = True
            self.evidence = [{"step": step, **values}]
            return True
        if "rewards/chosen" not in values or "rewards/rejected" not in values:
            return False
        point = {
            "step": step,
            "rewards/chosen": float(values["rewards/chosen"]),
            "rewards/rejected": float(values["rewards/rejected"]),
        }
        prev = self.previous
        self.previous = point
        falling = (
            prev is not None
            and point["rewards/chosen"] < prev["rewards/chosen"] - self.min_drop
            and point["rewards/rejected"] < prev["rewards/rejected"] - self.min_drop
            and point["rewards/chosen"] < 0
        )
        if not falling:
            self.streak = []
            return False
        if not self.streak:
            self.streak = [prev]
        self.streak.append(point)
        if len(self.streak) - 1 >= self.patience:
            self.collapsed = True
            self.evidence = list(self.streak)
        return self.collapsed

    def report(self) -> dict[str, Any]:
        reason = (
            "diverged (non-finite loss or reward)"
            if self.diverged
            else (
                f"desirable and undesirable rewards fell together for {self.patience} consecutive logs"
                if self.collapsed
                else None
            )
        )
        return {"collapsed": self.collapsed or self.diverged, "reason": reason, "evidence": self.evidence}


def make_health_callback(detector: CollapseDetector, on_log: LogCallback | None, stop_on_collapse: bool):
    """A TrainerCallback (built lazily: transformers is imported only when training)."""
    from transformers import TrainerCallback

    class HealthCallback(TrainerCallback):
        """Forwards logs to `on_log` (rank 0) and stops training on collapse (every rank).

        Logged values are already gathered across ranks, so every rank takes the same decision
        and no rank is left waiting in a collective.
        """

        def on_train_begin(self, args, state, control, **kwargs):
            # On resume the history up to the checkpoint comes back in state.log_history.
            for entry in state.log_history:
                detector.update(int(entry.get("step", 0)), entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if on_log is not None and state.is_world_process_zero:
                on_log({"step": int(state.global_step), "epoch": state.epoch, **logs})
            if "eval_loss" in logs or "train_runtime" in logs:
                return control
            if detector.update(int(state.global_step), logs) and stop_on_collapse:
                control.should_training_stop = True
            return control

    return HealthCallback()


def reference_check(initial: Mapping[str, float], tolerance: float, resumed: bool) -> dict[str, Any]:
    rewards = [abs(initial[k]) for k in ("rewards/chosen", "rewards/rejected") if k in initial]
    if resumed or not rewards:
        return {"checked": False, "reason": "resumed run" if resumed else "no initial rewards logged"}
    worst = max(rewards)
    return {
        "checked": True,
        "max_abs_initial_reward": worst,
        "tolerance": tolerance,
        "ok": worst <= tolerance,
        "initial_loss": initial.get("loss"),
    }
