"""The run config of one simulated week's main job (`retrain_job`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kto_pipeline.sim.ablations import get_ablation, merged
from kto_pipeline.sim.config import SimulationConfig
from kto_pipeline.sim.judge_server import RunningJudge
from kto_pipeline.sim.teacher import TEACHER_BATCH_SIZE, TEACHER_RUN_TIMEOUT_S


def week_run_config(config: SimulationConfig, judge: RunningJudge, dumps: Path) -> dict[str, Any]:
    """The main job's run config for a simulated week: the toy task's curation settings, the
    oracle judge (and teacher) endpoints, and the ablation's change laid over them.

    The feedback source is named in full (its `location` is `dumps`, as in the environment the
    job runs with): Dagster takes a resource's run config whole, so an ablation that changes one
    of its settings needs the rest there."""
    base = {
        "ops": {
            "deduplicated_feedback": {"config": {"semdedup_eps": config.semdedup_eps}},
            "scored_feedback": {"config": {"threshold": config.diversity_threshold}},
            "balanced_feedback": {"config": {"eval_fraction": config.eval_fraction}},
            "eval_report": {
                "config": {
                    "policy": {"tolerance": config.gate_tolerance},
                    "answers": {"max_new_tokens": config.answer_max_new_tokens, "decode_join": ""},
                }
            },
            "kto_checkpoint": {"config": {"window_weeks": config.window_weeks}},
        },
        "resources": {
            "feedback_source": {"config": {"location": str(dumps)}},
            "judge": {"config": {"kind": "openai", "model": judge.model, "base_url": judge.base_url}},
            **(
                {
                    "teacher_llm": {
                        "config": {
                            "kind": "openai",
                            "model": judge.teacher_model,
                            "base_url": judge.base_url,
                            "timeout_s": TEACHER_RUN_TIMEOUT_S,
                            # It answers at once, so distilabel's per-batch overhead dominated
                            # (833 requests: 23.9 s in batches of 8, 11.3 s in 64, the same rows).
                            "batch_size": TEACHER_BATCH_SIZE,
                        }
                    }
                }
                if judge.teacher is not None
                else {}
            ),
        },
    }
    return merged(base, get_ablation(config.ablate).run_config) if config.ablate else base
