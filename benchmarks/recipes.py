"""Training recipes through the whole loop, in the simulator: the main job per recipe variant,
scenario and seed, with the SFT-on-thumbs-up arm beside them; true held-out accuracy of the
champion after each week.

    .venv/bin/python -m benchmarks.recipes --scenarios carry_bug scarce_positives --seeds 0 1

Each run is `kto-pipeline simulate` in its own process and Dagster instance
(`<work>/<scenario>-s<seed>-<variant>/`), `--parallel` at a time (the trainer uses one thread,
so two runs share the 2 cores without slowing each other much). A run whose results.json is
already there is read, not rerun (`--rerun` forces it). The SFT arm runs once per scenario and
seed, inside the `kto` variant's run (its champion and traffic do not depend on the KTO arm).
Writes benchmarks/results/recipes.md and .json with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PROJECT = Path(__file__).resolve().parent.parent

# name → (what it is, simulate arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "kto_no_teacher": (
        "KTO alone, no synthetic top-up (the loop before the simulated teacher)",
        ["--no-teacher", "--recipe", json.dumps({"sft_first": False})],
    ),
    "kto": ("KTO alone, synthetic top-up from the simulated teacher", ["--recipe", json.dumps({"sft_first": False})]),
    "sft4_then_kto": (
        "SFT on the window's desirable rows (4 epochs), then KTO from it; top-up on",
        ["--recipe", json.dumps({"sft_first": True, "sft_epochs": 4.0})],
    ),
    "sft_then_kto": (
        "SFT on the window's desirable rows (8 epochs), then KTO from it; top-up on",
        ["--recipe", json.dumps({"sft_first": True, "sft_epochs": 8.0})],
    ),
}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(work: Path, scenario: str, seed: int, variant: str, with_sft: bool, rerun: bool) -> dict:
    return run_simulate(work, scenario, seed, variant, VARIANTS[variant][1], with_sft, rerun)


def results_path(work: Path, scenario: str, seed: int, name: str) -> Path:
    """Where a run's results.json lands: its own Dagster instance under `work`."""
    return work / f"{scenario}-s{seed}-{name}" / "simulator" / scenario / "results.json"


def run_simulate(
    work: Path, scenario: str, seed: int, name: str, simulate_args: list[str], with_sft: bool, rerun: bool
) -> dict:
    """`kto-pipeline simulate` with `simulate_args` in its own Dagster instance; its results.json."""
    results = results_path(work, scenario, seed, name)
    home = results.parents[2]
    if results.exists() and not rerun:
        return json.loads(results.read_text())
    home.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "kto_pipeline.app.cli",
        "simulate",
        "--scenario",
        scenario,
        "--seed",
        str(seed),
        "--arms",
        "kto,sft" if with_sft else "kto",
        "--project",
        str(PROJECT),
        *simulate_args,
    ]
    env = {**os.environ, "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    log = home / "simulate.log"
    print(f"running {home.name} …", flush=True)
    with log.open("w") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT).returncode
    if code != 0:
        raise RuntimeError(f"{home.name} failed (exit {code}); see {log}")
    return json.loads(results.read_text())


def curves(results: dict) -> dict[str, list[float]]:
    by_arm: dict[str, list[float]] = {}
    for row in results["rows"]:
        by_arm.setdefault(row["arm"], []).append(row["champion_accuracy"])
    return by_arm


def markdown(report: dict) -> str:
    lines = [
        "# Training recipes through the loop (simulator)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; commit {report['commit']}; load average {report['load_start']} → {report['load_end']}",
        "",
        *([f"**Note:** {report['note']}", ""] if report.get("note") else []),
        "True held-out accuracy of the champion after each week (1,000 held-out prompts, 2,000 samples at T=1;",
        "the champion is the last promoted checkpoint). `sft_on_thumbs_up` is the naive arm: SFT on the",
        "thumbs-up rows and edits of the same window, as many steps as the KTO arm of that run.",
        "",
        "| scenario | seed | variant | base | "
        + " | ".join(f"week {i + 1}" for i in range(report["weeks"]))
        + " | wall |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in range(report["weeks"])) + " | --- |",
    ]
    for run in report["runs"]:
        acc = " | ".join(f"{v:.3f}" for v in run["accuracy"])
        wall = f"{run['seconds'] / 60:.1f} min" if run.get("seconds") else ""
        lines.append(f"| {run['scenario']} | {run['seed']} | {run['variant']} | {run['base']:.3f} | {acc} | {wall} |")
    lines += ["", "Variants:", ""]
    lines += [f"- `{name}`: {what}" for name, (what, _) in VARIANTS.items() if name in report["variants"]]
    lines.append(
        f"- `sft_on_thumbs_up`: the naive arm (sim/sft.py), run inside the `{report.get('sft_in', 'kto')}` "
        "variant's run, as many steps as that run's KTO stage each week"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["carry_bug", "scarce_positives"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work", default="/tmp/kto_recipes", help="where each run's Dagster instance lives")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--sft-in", default="kto", help="the variant whose run also runs the SFT arm")
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "recipes"))
    parser.add_argument("--note", default=None, help="a note printed at the top of the report")
    args = parser.parse_args(argv)
    work = Path(args.work)
    sft_in = args.sft_in if args.sft_in in args.variants else args.variants[0]
    load_start = _load()
    jobs = [
        (scenario, seed, variant, variant == sft_in)
        for scenario in args.scenarios
        for seed in args.seeds
        for variant in args.variants
    ]
    with ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(lambda j: run_one(work, *j, args.rerun), jobs))
    runs = []
    for (scenario, seed, variant, _), results in zip(jobs, done, strict=True):
        base = results["base"]["accuracy"]
        for arm, accuracy in curves(results).items():
            name = variant if arm == "kto" else "sft_on_thumbs_up"
            runs.append(
                {
                    "scenario": scenario,
                    "seed": seed,
                    "variant": name,
                    "base": base,
                    "accuracy": accuracy,
                    "seconds": results["seconds"] if arm == "kto" else None,
                    "synthetic_rows": [r.get("synthetic_rows") for r in results["rows"] if r["arm"] == arm],
                }
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT)
    report = {
        "command": " ".join(["python -m benchmarks.recipes", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.stdout.strip(),
        "load_start": load_start,
        "load_end": _load(),
        "weeks": max(len(r["accuracy"]) for r in runs),
        "variants": args.variants,
        "sft_in": sft_in,
        "note": args.note,
        "runs": runs,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
