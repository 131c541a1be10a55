"""The training process the trainer resource launches: Dagster Pipes around `train_kto`.

Run as `python -m resources.trainer_process --spec spec.json`, or under
`accelerate launch --num_processes N -m resources.trainer_process --spec spec.json`. Every rank
trains; rank 0 alone talks to Dagster (live log lines and metrics, then the materialization),
so N processes never interleave messages on the one Pipes channel.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, open_dagster_pipes

from kto_pipeline.train import TRAINER_DIR, TrainResult, TrainSpec, latest_checkpoint, run_spec

_METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl", "grad_norm", "learning_rate")


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def materialization_metadata(result: TrainResult) -> dict[str, Any]:
    """What the UI shows for a checkpoint: where it is, what it learned from, how it went."""
    final = {f"final/{k}": _finite(v) for k, v in result.final_metrics.items() if k in _METRICS}
    evals = {
        f"eval/{k.removeprefix('eval_')}": _finite(v)
        for k, v in result.eval_metrics.items()
        if isinstance(v, (int, float))
    }
    health = result.health or {}
    return {
        "checkpoint": {"raw_value": result.output_dir, "type": "path"},
        "kind": result.kind,
        "base_model": result.base_model,
        "init_from": result.init_from or "base model",
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step if result.resumed_from_step is not None else 0,
        "collapsed": result.collapsed,
        "healthy": result.healthy,
        "health": {"raw_value": health, "type": "json"},
        "data": {"raw_value": result.data, "type": "json"},
        "timings_s": {"raw_value": {k: round(v, 2) for k, v in result.timings.items()}, "type": "json"},
        "fingerprint": result.fingerprint,
        "reused": result.reused,
        **final,
        **evals,
    }


def _with_pipes(spec: TrainSpec, pipes: PipesContext) -> TrainResult:
    def on_log(entry: dict[str, Any]) -> None:
        step = entry.get("step", entry.get("global_step", "?"))
        shown = {
            k: round(v, 5) if isinstance(v, float) else v
            for k, v in entry.items()
            if k in _METRICS or k.startswith("eval_")
        }
        pipes.log.info(f"step {step}: {json.dumps(shown, default=str)}")

    week = spec.lineage.week if spec.lineage is not None else ""
    pipes.log.info(f"training {week} from {spec.init_from or spec.base_model}")
    earlier = latest_checkpoint(Path(spec.work_dir) / TRAINER_DIR)
    if earlier is not None:
        pipes.log.info(
            f"an earlier attempt saved {earlier.name}: training resumes from it if the data and recipe are unchanged"
        )
    result = run_spec(spec, on_log=on_log)
    if result.resumed_from_step is not None:
        pipes.log.info(f"resumed from step {result.resumed_from_step}; finished at step {result.global_step}")
    pipes.report_asset_materialization(metadata=materialization_metadata(result), data_version=result.fingerprint[:16])
    if result.collapsed:
        pipes.log.warning(f"training collapsed: {json.dumps(result.health.get('collapse'), default=str)}")
    return result


# How long rank 0 holds an error back under `accelerate launch` (the launcher checks its ranks
# every 0.1 s).
PEER_GRACE_S = 3.0


def _wait_for_the_launcher() -> None:
    """When another rank is killed (OOM killer, kill -9), rank 0's next collective fails at once
    ("Connection reset by peer") and would report that as its own error, which the trainer
    resource does not retry. Holding the error back lets the launcher, which has seen a rank
    die, stop this process first: it then ends without closing its Pipes session, and the
    resource treats the run as killed, to be resumed. A genuine error is reported a moment later."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        time.sleep(PEER_GRACE_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resources.trainer_process")
    parser.add_argument("--spec", required=True, help="JSON training spec (kto_pipeline.train.TrainSpec)")
    ns = parser.parse_args(argv)
    spec = TrainSpec.from_json(Path(ns.spec).read_text())
    if _rank() == 0 and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        with open_dagster_pipes() as pipes:
            try:
                _with_pipes(spec, pipes)
            except Exception:
                _wait_for_the_launcher()
                raise
    else:
        run_spec(spec)
    # A collapsed training still finishes its step: the eval gate refuses to promote it.
    return 0


if __name__ == "__main__":
    sys.exit(main())
