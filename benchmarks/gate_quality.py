"""Gate quality in the simulator: how often each promotion gate blocks a bad candidate and promotes a good one.

    .venv/bin/python -m benchmarks.gate_quality              # every week of the run, ~3 min on 2 shared cores
    .venv/bin/python -m benchmarks.gate_quality --weeks 2    # the first two

Reads a finished simulator run (`kto-pipeline simulate`, default
`.dagster_home/simulator/carry_bug/`): each week's training and held-out rows as the
`kto_checkpoint` asset wrote them (`models/work/<week>/{train,eval}_rows.parquet`, its class
weights in `spec.json`), the champion the week's candidate was trained from (the previous
week's checkpoint; the bundled base in week 1) and the real candidate. Beside the real
candidate, planted bad candidates are built from the same champion and the same rows:

* flipped: KTO on the week's rows with every label flipped (a labelling bug);
* untrained: a copy of the champion's folder (a training step that silently did nothing);
* overtrained: lr x20 (1e-3) for 240 steps, past the tiny recipe's lr cliff (3e-4 collapses);
* collapsed: lr x200 (1e-2) with the collapse guard's default (stop on collapse), the run the
  guard exists for; if the guard does not fire the row says so (`collapsed` false).

Planted runs are capped in steps (120 / 240 / 80, seed 0) so each takes seconds on one thread.
flipped and overtrained keep training after the guard fires (`stop_on_collapse` off).

Truth is the oracle: held-out accuracy over 2,000 draws at T=1 (`sim.evaluate_model`, the
number the simulator's results table reports), candidate minus champion. Each candidate then
goes through the production code path of the `eval_report` asset: `evaluate_candidates`
(implicit reward), `evaluate_answers` (greedy answers to the held-out prompts, the oracle
judge over HTTP in both orders, edit and thumbs-down signals) and `decide_promotion` under
three policies:

* implicit: the reward-accuracy rule only (tolerance 0.05, the simulator's), collapse ignored;
* answers: the answer rules only (judge win rate, edits, reproduced thumbs-down), collapse ignored;
* combined: `PromotionPolicy(tolerance=0.05)` with the answer rules, the unchanged rule (a
  candidate with the baseline's exact rewards and answers is blocked) and the collapse check at
  their defaults: what the main job runs (the acceptance figure is computed on this one);
* combined_must_improve: not a default, a probe: the combined gate with the reward accuracy
  required to rise by half a point (`tolerance=-0.005`).

A candidate is bad when it is planted or its true change is <= 0, good when its true change
is >= +1 point; the rest (0 to +1 point) is counted apart. Results go to
benchmarks/results/gate_quality.{json,md} with the command, load average and seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch

from kto_pipeline import evaluate as ev
from kto_pipeline.curate.balance import kto_class_weights
from kto_pipeline.models.manifest import collapse_of, read_manifest
from kto_pipeline.sim import evaluate_model, tiny_kto_recipe
from kto_pipeline.sim.judge_server import serve_oracle_judge
from kto_pipeline.train import train_kto

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DEFAULT_RUN = ROOT.parent / ".dagster_home" / "simulator" / "carry_bug"
GATE_TOLERANCE = 0.05  # SimulationConfig.gate_tolerance: ~70-90 held-out rows a week
GOOD_MIN_CHANGE = 0.01
EVAL_SAMPLES = 2000
SEED = 0

POLICIES = {
    "implicit": ev.PromotionPolicy(
        tolerance=GATE_TOLERANCE,
        min_win_rate_upper=0.0,
        min_edit_closer_upper=0.0,
        max_reproduction_increase=1.0,
        block_unchanged=False,
    ),
    # An infinite tolerance makes the reward rule pass whatever the rewards: only the answer rules decide.
    "answers": ev.PromotionPolicy(tolerance=math.inf, block_unchanged=False),
    # The pipeline's gate: the simulator's tolerance, the answer rules and the unchanged rule at their defaults.
    "combined": ev.PromotionPolicy(tolerance=GATE_TOLERANCE),
    # Not the default: the reward accuracy must rise by at least half a point (a negative tolerance), which
    # also tells a no-op from an improvement, but on noisy held-out sets blocks good weeks too.
    "combined_must_improve": ev.PromotionPolicy(tolerance=-0.005, block_unchanged=False),
}
# Planted recipes: overrides of the week's own recipe. Step caps keep each run under a minute on one thread.
# flipped and overtrained train their whole budget even when the collapse guard fires (it still
# flags them, and the combined gate reads the flag), so the other gates meet a fully trained model.
PLANTED = {
    "flipped": {"max_steps": 120, "stop_on_collapse": False},
    "overtrained": {"learning_rate": 1e-3, "max_steps": 240, "stop_on_collapse": False},
    "collapsed": {"learning_rate": 1e-2, "max_steps": 80},
}


@dataclass(frozen=True)
class Week:
    week: str
    base: str
    champion: str  # what the candidate would replace: last week's checkpoint, or the base
    has_champion: bool
    checkpoint: str
    train_rows: pd.DataFrame
    eval_rows: pd.DataFrame
    weights: tuple[float, float]
    recipe: dict[str, Any]


def load_weeks(run: Path) -> list[Week]:
    results = json.loads((run / "results.json").read_text())
    weeks, previous = [], None
    for week in results["weeks"]:
        work = run / "models" / "work" / week
        spec = json.loads((work / "spec.json").read_text())
        # Every week of the run was promoted, so each candidate's champion is last week's checkpoint;
        # the spec's init_from says so for the run at hand.
        champion = spec.get("init_from") or spec["base_model"]
        if previous is not None and str(champion) != str(previous):
            raise ValueError(f"week {week} was trained from {champion}, not the previous checkpoint {previous}")
        weeks.append(
            Week(
                week=week,
                base=spec["base_model"],
                champion=str(champion),
                has_champion=spec.get("init_from") is not None,
                checkpoint=spec["output_dir"],
                train_rows=pd.read_parquet(spec["train_rows"]),
                eval_rows=pd.read_parquet(spec["eval_rows"]),
                weights=(float(spec["desirable_weight"]), float(spec["undesirable_weight"])),
                recipe=dict(spec["recipe"]),
            )
        )
        previous = spec["output_dir"]
    return weeks


def train_planted(week: Week, kind: str, out: Path) -> tuple[str, bool, str | None, int, float]:
    """Train one planted candidate from the week's champion; returns (path, collapsed, reason, steps, seconds)."""
    rows = week.train_rows.copy()
    weights = week.weights
    if kind == "flipped":
        rows["label"] = ~rows["label"].astype(bool)
        n_d = int(rows["label"].sum())
        cw = kto_class_weights(n_d, len(rows) - n_d)
        weights = (cw.desirable, cw.undesirable)
    recipe = tiny_kto_recipe({**week.recipe, **PLANTED[kind], "seed": SEED})
    t0 = time.monotonic()
    result = train_kto(
        rows,
        base_model=week.base,
        init_from=week.champion if week.has_champion else None,
        output_dir=out / "model",
        work_dir=out / "work",
        recipe=recipe,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
        lineage={"week": week.week, "weeks": sorted(set(rows["week"])), "planted": kind},
        device="cpu",
    )
    reason = (result.health.get("collapse") or {}).get("reason") if result.collapsed else None
    return str(out / "model"), bool(result.collapsed), reason, int(result.global_step), time.monotonic() - t0


def judge_candidate(week: Week, candidate: str, collapsed: bool, reason: str | None, judge, accuracy) -> dict:
    """The eval_report path for one candidate, decided under each policy, with the oracle's truth."""
    result = ev.evaluate_candidates(
        week.eval_rows,
        candidate=candidate,
        champion=week.champion if week.has_champion else None,
        base=week.base,
        beta=float(week.recipe["beta"]),
        weights=ev.KTOWeights(*week.weights),
        batch_size=64,
        max_length=int(week.recipe["max_length"]),
        device="cpu",
        week=week.week,
    )
    answers = ev.evaluate_answers(
        week.eval_rows,
        candidate=candidate,
        baseline=week.champion,
        baseline_role=result.baseline_role,
        # The simulator's answer settings: an answer is <= 3 digits + EOS; the char tokenizer has no decoder.
        config=ev.AnswerConfig(max_new_tokens=4, decode_join="", batch_size=32, seed=SEED),
        data_format=result.data_format,
        judge=ev.OpenAIJudge(judge.model, judge.base_url),
        device="cpu",
    )
    decisions = {}
    for name, policy in POLICIES.items():
        uses_collapse = name.startswith("combined")
        d = ev.decide_promotion(
            result, policy, collapsed=collapsed and uses_collapse, collapse_reason=reason, answers=answers
        )
        decisions[name] = {"promote": d.promote, "failed": [text for ok, text in d.lines() if not ok]}
    cand = result.models["candidate"]
    base = result.models[result.baseline_role]
    win = answers.win_rate if answers is not None else None
    true_cand, true_champ = accuracy(candidate), accuracy(week.champion)
    return {
        "true_accuracy": true_cand,
        "champion_accuracy": true_champ,
        "true_change": true_cand - true_champ,
        "reward_accuracy": cand.reward_accuracy,
        "baseline_reward_accuracy": base.reward_accuracy,
        "win_rate": None if win is None else [win.estimate, win.low, win.high],
        "collapsed": collapsed,
        "collapse_reason": reason,
        "decisions": decisions,
    }


def classify(row: dict) -> str:
    if row["planted"] or row["true_change"] <= 0:
        return "bad"
    return "good" if row["true_change"] >= GOOD_MIN_CHANGE else "neutral"


def confusion(rows: list[dict]) -> dict[str, dict[str, int]]:
    out = {}
    for gate in POLICIES:
        counts = {"bad_blocked": 0, "bad_promoted": 0, "good_promoted": 0, "good_blocked": 0, "neutral_promoted": 0}
        counts["neutral_blocked"] = 0
        for r in rows:
            promoted = r["decisions"][gate]["promote"]
            counts[f"{r['class']}_{'promoted' if promoted else 'blocked'}"] += 1
        out[gate] = counts
    return out


def acceptance(rows: list[dict]) -> dict[str, Any]:
    planted = [r for r in rows if r["planted"]]
    good = [r for r in rows if r["class"] == "good"]
    blocked = sum(not r["decisions"]["combined"]["promote"] for r in planted)
    promoted = sum(r["decisions"]["combined"]["promote"] for r in good)
    share = promoted / len(good) if good else None
    return {
        "planted_blocked": f"{blocked}/{len(planted)}",
        "good_promoted": f"{promoted}/{len(good)}",
        "good_promoted_share": share,
        "blocks_every_planted": blocked == len(planted),
        "promotes_90pct_good": share is not None and share >= 0.9,
        "reached": blocked == len(planted) and share is not None and share >= 0.9,
    }


def render(report: dict) -> str:
    lines = [
        "# Promotion gate quality in the simulator",
        "",
        f"Command: `{report['command']}`  ",
        f"Run: `{report['run']}`, weeks {', '.join(report['weeks'])}  ",
        f"Seeds: training {SEED}, answers/bootstrap {SEED}, oracle accuracy {EVAL_SAMPLES} draws at T=1 "
        f"(sim EVAL_SEED); load average {report['load_before']} before, {report['load_after']} after; "
        f"{report['seconds']:.0f} s wall, torch threads 1.",
        "",
        "Bad = planted, or true held-out accuracy change <= 0; good = true change >= +1 point.",
        "",
        "| gate | bad blocked | bad promoted | good promoted | good blocked | 0 to +1 pt promoted / blocked |",
        "|---|---|---|---|---|---|",
    ]
    for gate, c in report["confusion"].items():
        lines.append(
            f"| {gate} | {c['bad_blocked']} | {c['bad_promoted']} | {c['good_promoted']} | {c['good_blocked']} "
            f"| {c['neutral_promoted']} / {c['neutral_blocked']} |"
        )
    acc = report["acceptance"]
    lines += [
        "",
        f"Acceptance (combined gate blocks every planted candidate, promotes >= 90% of good ones): "
        f"planted blocked {acc['planted_blocked']}, good promoted {acc['good_promoted']} -> "
        f"**{'reached' if acc['reached'] else 'NOT reached'}**.",
        "",
        "| week | candidate | class | true acc | champion | change (pts) | reward acc cand / base | judge win rate [95% CI] "
        "| collapsed | " + " | ".join(POLICIES) + " |",
        "|---" * (9 + len(POLICIES)) + "|",
    ]
    for r in report["rows"]:
        win = "n/a" if r["win_rate"] is None else "{:.3f} [{:.2f}, {:.2f}]".format(*r["win_rate"])
        gates = " | ".join("promote" if r["decisions"][g]["promote"] else "block" for g in POLICIES)
        lines.append(
            f"| {r['week']} | {r['candidate']} | {r['class']} | {r['true_accuracy']:.4f} | {r['champion_accuracy']:.4f} "
            f"| {100 * r['true_change']:+.2f} | {r['reward_accuracy']:.3f} / {r['baseline_reward_accuracy']:.3f} "
            f"| {win} | {r['collapsed']} | {gates} |"
        )
    lines += ["", "Blocking reasons (combined gate):", ""]
    for r in report["rows"]:
        failed = r["decisions"]["combined"]["failed"]
        if failed:
            lines.append(f"- {r['week']} {r['candidate']}: " + "; ".join(failed))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="a finished simulator run folder")
    parser.add_argument("--weeks", type=int, default=None, help="first N weeks of the run (default: all)")
    parser.add_argument("--scratch", type=Path, default=None, help="where planted models go (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a 0.5M-parameter model: one thread beats two busy ones
    datasets.disable_progress_bars()  # a dozen TRL dataset passes per run would bury the results
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    weeks = load_weeks(args.run)[: args.weeks]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="gate_quality-"))
    cache: dict[str, float] = {}

    def accuracy(ref: str) -> float:
        if ref not in cache:
            cache[ref] = evaluate_model(ref, EVAL_SAMPLES).accuracy
        return cache[ref]

    rows = []
    with serve_oracle_judge() as judge:
        for week in weeks:
            manifest = read_manifest(week.checkpoint)
            collapse = collapse_of(manifest)
            candidates = [("real", week.checkpoint, collapse is not None, (collapse or {}).get("reason"), None, 0.0)]
            copy = scratch / week.week / "untrained"
            shutil.copytree(week.champion, copy, dirs_exist_ok=True)
            candidates.append(("untrained", str(copy), False, None, 0, 0.0))
            for kind in PLANTED:
                path, collapsed, reason, steps, secs = train_planted(week, kind, scratch / week.week / kind)
                candidates.append((kind, path, collapsed, reason, steps, secs))
            for kind, path, collapsed, reason, steps, secs in candidates:
                t0 = time.monotonic()
                row = {"week": week.week, "candidate": kind, "planted": kind != "real", "path": path}
                row.update(judge_candidate(week, path, collapsed, reason, judge, accuracy))
                row.update(steps=steps, train_seconds=round(secs, 1), eval_seconds=round(time.monotonic() - t0, 1))
                row["class"] = classify(row)
                rows.append(row)
                print(
                    f"{week.week} {kind:11s} change {100 * row['true_change']:+6.2f} pts ({row['class']}); "
                    + ", ".join(f"{g} {'promote' if d['promote'] else 'block'}" for g, d in row["decisions"].items()),
                    flush=True,
                )
        judge_counts = dict(judge.judge.counts)
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.gate_quality"
        + "".join(f" {a}" for a in sys.argv[1:]),
        "run": str(args.run),
        "weeks": [w.week for w in weeks],
        "seeds": {"train": SEED, "answers": SEED, "eval_samples": EVAL_SAMPLES},
        "planted_recipes": PLANTED,
        "gate_tolerance": GATE_TOLERANCE,
        "good_min_change": GOOD_MIN_CHANGE,
        "policies": {name: str(p) for name, p in POLICIES.items()},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": time.monotonic() - started,
        "judge_requests": judge_counts,
        "confusion": confusion(rows),
        "acceptance": acceptance(rows),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gate_quality.json").write_text(json.dumps(report, indent=1, default=str))
    md = render(report)
    (RESULTS / "gate_quality.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
