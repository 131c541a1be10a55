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
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, open_dagster_pipes

from kto_pipeline.training import TrainResult, run_spec

_METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl", "grad_norm", "learning_rate")


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def materialization_metadata(result: TrainResult) -> dict[str, Any]:
    """What the UI shows for a checkpoint: where it is, what it learned from, how it went."""
    final = {f"final/{k}": _finite(v) for k, v in result.final_metrics.items() if k in _METRICS}
    evals = {f"eval/{k.removeprefix('eval_')}": _finite(v) for k, v in result.eval_metrics.items() if isinstance(v, (int, float))}
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


def _with_pipes(spec: dict[str, Any], pipes: PipesContext) -> TrainResult:
    def on_log(entry: dict[str, Any]) -> None:
        step = entry.get("step", entry.get("global_step", "?"))
        shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in entry.items() if k in _METRICS or k.startswith("eval_")}
        pipes.log.info(f"step {step}: {json.dumps(shown, default=str)}")

    pipes.log.info(f"training {spec.get('lineage', {}).get('week', '')} from {spec.get('init_from') or spec['base_model']}")
    result = run_spec(spec, on_log=on_log)
    pipes.report_asset_materialization(metadata=materialization_metadata(result), data_version=result.fingerprint[:16])
    if result.collapsed:
        pipes.log.warning(f"training collapsed: {json.dumps(result.health.get('collapse'), default=str)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resources.trainer_process")
    parser.add_argument("--spec", required=True, help="JSON training spec (see kto_pipeline.training.run_spec)")
    ns = parser.parse_args(argv)
    spec = json.loads(Path(ns.spec).read_text())
    if _rank() == 0 and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        with open_dagster_pipes() as pipes:
            _with_pipes(spec, pipes)
    else:
        run_spec(spec)
    # A collapsed training still finishes its step: the eval gate refuses to promote it.
    return 0


if __name__ == "__main__":
    sys.exit(main())
