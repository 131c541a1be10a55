"""The naive arm's weeks, run in a worker process beside the pipeline's.

Each week the naive arm needs the KTO arm's step count (equal compute), so it can only start
once that week's Dagster run is over; nothing of the KTO arm needs it back. Run in the main
process it added about 40 s a week to the main job; here it overlaps the next week's pipeline
run (the trainer uses one thread, the arm another). The worker keeps the arm's state (its
champion and the records of its training window) across weeks: one worker, tasks in order. Its
numbers do not depend on where it runs: the same calls, seeds and thread counts as before.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kto_pipeline.sim.measure import evaluate_model
from kto_pipeline.sim.sft import train_sft_on_positives
from kto_pipeline.sim.users import OracleUser, simulate_week


@dataclass
class SFTArm:
    """SFT on the thumbs-up rows of the last `window_weeks` weeks, from its own champion."""

    champion: str
    root: Path  # the week's checkpoint goes to root / week
    user: OracleUser
    seed: int
    window_weeks: int
    eval_samples: int
    lr: float
    batch: int
    records: list[list[dict[str, Any]]] = field(default_factory=list)

    def run_week(self, index: int, week: str, prompts: list[str], steps: int, weeks: list[str]) -> dict[str, Any]:
        traffic = simulate_week(self.champion, prompts, week, user=self.user, seed=self.seed, model_version="sft")
        stats = traffic.stats()
        self.records.append(traffic.records)
        rows = [r for records in self.records[-self.window_weeks :] for r in records]
        out = self.root / week
        train_sft_on_positives(
            self.champion, rows, steps=steps, output_dir=out, lr=self.lr, batch=self.batch, seed=self.seed, weeks=weeks
        )
        report = evaluate_model(out, self.eval_samples)
        self.champion = str(out)
        return {
            "week": week,
            "arm": "sft",
            "served_by": "sft" if index else "base",
            "traffic_accuracy": stats["true_accuracy"],
            "thumbs_up_rate": stats["thumbs_up_rate"],
            "train_rows": len([r for r in rows if r["label"] or r.get("edited_completion")]),
            "steps": steps,
            "candidate_accuracy": report.accuracy,
            "candidate_carry_greedy": report.carry_greedy_accuracy,
            "reward_accuracy": None,
            "margin": None,
            "win_rate": None,
            "collapsed": False,
            "promoted": True,
            "champion_accuracy": report.accuracy,
        }


_ARM: SFTArm | None = None  # the worker's arm (set once by the pool's initializer)


def _start(arm: SFTArm) -> None:
    global _ARM
    _ARM = arm


def _run_week(*args: Any) -> dict[str, Any]:
    assert _ARM is not None, "the SFT arm's worker was not initialised"
    return _ARM.run_week(*args)


class SFTArmWorker:
    """One spawned worker process running the arm's weeks in submission order."""

    def __init__(self, arm: SFTArm) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(arm,)
        )

    def submit(self, index: int, week: str, prompts: list[str], steps: int, weeks: list[str]) -> Future:
        return self._pool.submit(_run_week, index, week, list(prompts), steps, list(weeks))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
