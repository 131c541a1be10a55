"""One step of the loop changed at a time, for `kto-pipeline simulate --ablate STEP` and
`benchmarks.ablations`: what each curation and training step is worth, measured on the
simulator's true held-out accuracy.

Each ablation is a change to the main job's run config (merged over the simulator's own) or
the simulator's teacher switched off; the assets run unchanged otherwise. The simulator's full
loop already runs two embedding stages only as exact-vector merges (SemDeDup eps 0, DEITA
diversity threshold 1.0, see `SimulationConfig`), so for diversity selection the ablation runs
the other way: turned on at production's threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ablation:
    name: str
    change: str  # what differs from the full loop, in words
    run_config: dict[str, Any] = field(default_factory=dict)  # merged over the week's run config
    teacher: bool = True  # False: no synthetic top-up (no teacher is served)


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation(
            "dedup",
            "no deduplication: contradictions, exact, MinHash and SemDeDup duplicates all stay",
            {"ops": {"deduplicated_feedback": {"config": {"enabled": False}}}},
        ),
        Ablation(
            "diversity_selection",
            "DEITA's diversity selection on at production's threshold (0.9) instead of off",
            {"ops": {"scored_feedback": {"config": {"threshold": 0.9}}}},
        ),
        Ablation(
            "class_weights",
            "no class weights: λD = λU = 1 whatever the window's class counts",
            {"ops": {"kto_checkpoint": {"config": {"class_weights": False}}}},
        ),
        Ablation("synthetic_topup", "no synthetic top-up (no teacher)", teacher=False),
        Ablation(
            "edit_rows",
            "edits not used as rows: an edited answer counts by its thumb alone",
            {"resources": {"feedback_source": {"config": {"edits_as_rows": False}}}},
        ),
        Ablation(
            "answer_gate",
            "promotion without the answer rules (judge win rate, closer to edits, reproduced thumbs-downs): "
            "the implicit-reward check and the collapse guard only",
            {
                "ops": {
                    "eval_report": {
                        "config": {
                            "policy": {
                                "min_win_rate_upper": 0.0,
                                "min_edit_closer_upper": 0.0,
                                "max_reproduction_increase": 1.0,
                            }
                        }
                    }
                }
            },
        ),
    )
}


def get_ablation(name: str) -> Ablation:
    try:
        return ABLATIONS[name]
    except KeyError:
        raise ValueError(f"unknown ablation {name!r}; one of {', '.join(ABLATIONS)}") from None


def merged(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `change` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
