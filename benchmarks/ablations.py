"""What each step of the loop is worth: the main job with one step changed at a time
(`kto-pipeline simulate --ablate STEP`, kto_pipeline/sim/ablations.py), true held-out accuracy
of the champion after each week, beside the full loop and the SFT-on-thumbs-up arm.

    .venv/bin/python -m benchmarks.ablations --scenarios carry_bug scarce_positives --seeds 0

Each run is its own process and Dagster instance (`<work>/<scenario>-s<seed>-ablate-<step>/`),
`--parallel` at a time, without the SFT arm. The full loop and the SFT arm of the same
scenario and seed are read from `--full-from` (benchmarks/results/recipes.json: variant
`sft_then_kto` and `sft_on_thumbs_up`, the same simulator defaults and seeds) unless
`--run-full` runs them here too. A run whose results.json exists is read, not rerun. The
report is rewritten after every finished run, so an interrupted benchmark leaves what it
measured. Writes benchmarks/results/ablations.md and .json with the load average.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from benchmarks.recipes import PROJECT, RESULTS, VARIANTS, _load, curves, results_path, run_simulate
from kto_pipeline.sim.ablations import ABLATIONS

FULL = "sft_then_kto"  # the simulator's default recipe: the full loop
SFT_ARM = "sft_on_thumbs_up"


def _full_runs(path: Path, scenarios: list[str], seeds: list[int]) -> list[dict]:
    report = json.loads(path.read_text())
    return [
        {
            **run,
            "variant": "full loop" if run["variant"] == FULL else SFT_ARM,
            "from": f"{path.name} ({report['commit']})",
        }
        for run in report["runs"]
        if run["variant"] in (FULL, SFT_ARM) and run["scenario"] in scenarios and run["seed"] in seeds
    ]


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the project when inside it."""
    path = path.resolve()
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)


def markdown(report: dict) -> str:
    weeks = report["weeks"]
    lines = [
        "# Ablations through the loop (simulator)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; commit {report['commit']}; load average {report['load_start']} → {report['load_end']}",
        "",
        *([f"**Note:** {report['note']}", ""] if report.get("note") else []),
        "True held-out accuracy of the champion after each week (1,000 held-out prompts, 2,000 samples at T=1;",
        "the champion is the last promoted checkpoint). Δ: the ablation minus the full loop, week by week",
        "(mean over the weeks, and at the last week). The full loop is the simulator's default (SFT then KTO,",
        "synthetic top-up from the simulated teacher, exact/MinHash dedup, class weights, edits as rows, the",
        "answer gate).",
        "",
        "| scenario | seed | variant | base | "
        + " | ".join(f"week {i + 1}" for i in range(weeks))
        + " | Δ mean | Δ last | wall |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in range(weeks)) + " | --- | --- | --- |",
    ]
    full = {(r["scenario"], r["seed"]): r["accuracy"] for r in report["runs"] if r["variant"] == "full loop"}
    for run in sorted(report["runs"], key=lambda r: (r["scenario"], r["seed"], _order(r["variant"]))):
        if run.get("error"):
            what = "not run" if run["error"] == "not run" else f"failed: {run['error']}"
            lines.append(f"| {run['scenario']} | {run['seed']} | {run['variant']} | {what} |")
            continue
        acc = " | ".join(f"{v:.3f}" for v in run["accuracy"])
        ref = full.get((run["scenario"], run["seed"]))
        delta_mean = delta_last = ""
        if ref and run["variant"] != "full loop" and len(ref) == len(run["accuracy"]):
            deltas = [100 * (a - b) for a, b in zip(run["accuracy"], ref, strict=True)]
            delta_mean, delta_last = f"{sum(deltas) / len(deltas):+.1f}", f"{deltas[-1]:+.1f}"
        wall = f"{run['seconds'] / 60:.1f} min" if run.get("seconds") else ""
        lines.append(
            f"| {run['scenario']} | {run['seed']} | {run['variant']} | {run['base']:.3f} | {acc} | {delta_mean} | {delta_last} | {wall} |"
        )
    lines += ["", "Variants:", ""]
    lines.append(
        "- `full loop`: " + VARIANTS[FULL][0] + (f" (from {report['full_from']})" if report.get("full_from") else "")
    )
    lines.append(f"- `{SFT_ARM}`: the naive arm (sim/sft.py): SFT on the thumbs-up rows and edits of the same window")
    lines += [f"- `-{name}`: {ABLATIONS[name].change}" for name in report["ablations"]]
    return "\n".join(lines) + "\n"


def _order(variant: str) -> int:
    names = ["full loop", SFT_ARM, *(f"-{n}" for n in ABLATIONS)]
    return names.index(variant) if variant in names else len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["carry_bug", "scarce_positives"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    parser.add_argument("--work", default="/tmp/kto_ablations", help="where each run's Dagster instance lives")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--full-from", default=str(RESULTS / "recipes.json"))
    parser.add_argument("--run-full", action="store_true", help="run the full loop and the SFT arm here too")
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="no runs: report the runs whose results are already in --work"
    )
    parser.add_argument("--out", default=str(RESULTS / "ablations"))
    parser.add_argument("--note", default=None)
    args = parser.parse_args(argv)
    work = Path(args.work)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT)
    report = {
        "command": " ".join(["python -m benchmarks.ablations", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.stdout.strip(),
        "load_start": _load(),
        "load_end": None,
        "weeks": 4,
        "ablations": args.ablations,
        "note": args.note,
        "full_from": None if args.run_full else _shown(Path(args.full_from)),
        "runs": [] if args.run_full else _full_runs(Path(args.full_from), args.scenarios, args.seeds),
    }
    jobs = [
        (scenario, seed, f"-{name}", ["--ablate", name], False)
        for name in args.ablations
        for scenario in args.scenarios
        for seed in args.seeds
    ]
    if args.run_full:
        jobs = [
            (scenario, seed, "full loop", list(VARIANTS[FULL][1]), True)
            for scenario in args.scenarios
            for seed in args.seeds
        ] + jobs
    out = Path(args.out)

    def run(job: tuple) -> dict:
        scenario, seed, variant, simulate_args, with_sft = job
        name = "full" if variant == "full loop" else f"ablate{variant}"
        if args.report_only:
            if not results_path(work, scenario, seed, name).exists():
                raise RuntimeError("not run")
        return run_simulate(work, scenario, seed, name, simulate_args, with_sft, args.rerun)

    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {pool.submit(run, job): job for job in jobs}
        for future in as_completed(futures):
            scenario, seed, variant, _, _ = futures[future]
            try:
                results = future.result()
            except Exception as err:  # one failed run must not lose the others' figures
                report["runs"].append({"scenario": scenario, "seed": seed, "variant": variant, "error": str(err)[:300]})
            else:
                for arm, accuracy in curves(results).items():
                    report["runs"].append(
                        {
                            "scenario": scenario,
                            "seed": seed,
                            "variant": variant if arm == "kto" else SFT_ARM,
                            "base": results["base"]["accuracy"],
                            "accuracy": accuracy,
                            "promoted": [r.get("promoted") for r in results["rows"] if r["arm"] == arm],
                            "seconds": results["seconds"] if arm == "kto" else None,
                        }
                    )
            report["load_end"] = _load()
            out.with_suffix(".json").write_text(json.dumps(report, indent=1))
            out.with_suffix(".md").write_text(markdown(report))
            print(f"{scenario} s{seed} {variant} done", flush=True)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
