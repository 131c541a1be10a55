"""`kto-pipeline`: the demo (README command 1), instance set-up, and the sample generator.

The library does not import Dagster, so the CLI drives it the way a person would: through
the `dagster` command, against the persistent instance in DAGSTER_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from kto_pipeline.app import capture_command
from kto_pipeline.app.dagster_command import OFFLINE_ENV, execute_week
from kto_pipeline.config import (
    DAGSTER_HOME,
    DeploymentSettings,
    instance_home,
    settings_env,
    shell_assignments,
)
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.devtools.sample_data import SAMPLE_DIR, build_sample
from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm
from kto_pipeline.ingest.dumps import list_dumps
from kto_pipeline.ingest.load import IngestOptions, ingest, records_kept
from kto_pipeline.models.manifest import read_manifest
from kto_pipeline.models.registry import ModelRegistry


def prepare_home(home: Path, instance_yaml: Path) -> Path:
    """Create DAGSTER_HOME with the project's dagster.yaml (kept if the user changed it)."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not instance_yaml.exists():
        raise SystemExit(f"{instance_yaml} not found: run kto-pipeline from the project folder")
    if not target.exists():
        shutil.copyfile(instance_yaml, target)
    elif target.read_bytes() != instance_yaml.read_bytes():
        print(f"note: keeping your own {target} (it differs from {instance_yaml})")
    return home


def _closed_weeks(dumps_location: str, calendar: WeekCalendar) -> list[str]:
    """The weeks the dumps touch that have already closed (a partition exists only then)."""
    weeks = ingest(list_dumps(dumps_location), IngestOptions(calendar=calendar)).weeks()
    current = calendar.week_of(pd.Timestamp.now(tz="UTC"))
    return sorted(w for w in weeks if w < current)


_PLACEHOLDER = r"<[A-Z_]+_\d+>"

# The demo trains a tiny local base model on a CPU with nothing downloaded; a user's own
# settings win.
DEMO_RECIPE = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_steps": 8,
    "learning_rate": 1e-3,
    "beta": 0.5,
    "warmup_ratio": 0.0,
    "logging_steps": 2,
    "save_steps": 4,
    "max_length": 512,
}


def demo_models_env(home: Path, *, plumbing: bool = False) -> dict[str, str]:
    """The demo's models: a tiny, randomly initialised local base model to train, and no DEITA
    scorer or teacher LLM (scoring and the synthetic top-up say they are off), because a random
    model's scores would select rows and its text would become training rows.

    plumbing=True (tests only) points the scorer and the teacher at the same tiny model, to run
    their code paths end to end; what they produce is noise and is treated as such.
    """
    tiny = str(build_tiny_causal_lm(home / "demo_models" / "tiny-lm"))
    helpers = (
        {
            "scorer_backend": "transformers",
            "scorer_complexity_model": tiny,
            "scorer_quality_model": tiny,
            "teacher_kind": "transformers",
            "teacher_model": tiny,
            "teacher_temperature": 1.0,  # a random model decodes whitespace greedily
        }
        if plumbing
        else {"scorer_backend": "none", "teacher_kind": "none"}
    )
    return settings_env(**helpers, base_model=tiny, trainer_device="cpu", trainer_recipe=DEMO_RECIPE)


def _week_summary(storage: Path, week: str) -> dict:
    """One line of the demo's table, read from what the week's assets wrote."""

    def read(asset: str) -> pd.DataFrame | None:
        path = storage / asset / f"{week}.parquet"
        return pd.read_parquet(path) if path.exists() else None

    rows, quarantine = read("raw_feedback"), read("raw_feedback_quarantine")
    kept = records_kept(rows)
    summary = {"week": week, "records_in": kept + len(quarantine), "quarantined": len(quarantine), "rows": len(rows)}
    redacted = read("redacted_feedback")
    if redacted is not None:
        summary["pii_replaced"] = int(
            redacted["prompt"].str.count(_PLACEHOLDER).sum() + redacted["completion"].str.count(_PLACEHOLDER).sum()
        )
    final = rows
    deduplicated = read("deduplicated_feedback")
    if deduplicated is not None:
        summary["duplicates_dropped"] = len(redacted) - len(deduplicated) if redacted is not None else None
        final = deduplicated
        summary["rows_kept"] = len(final)
    summary["desirable"] = int(final["label"].sum())
    summary["undesirable"] = int((~final["label"]).sum())
    scored, balanced, synthetic = read("scored_feedback"), read("balanced_feedback"), read("synthetic_topup")
    if scored is not None:
        summary["selected"] = len(scored)
    if balanced is not None:
        summary["train"] = int((balanced["split"] == "train").sum())
        summary["held_out"] = int((balanced["split"] == "eval").sum())
    if synthetic is not None:
        summary["synthetic"] = len(synthetic)
    return summary


def _training_summary(registry: ModelRegistry, week: str) -> dict:
    manifest = read_manifest(registry.checkpoint_dir(week))
    if manifest is None:
        return {}
    report = registry.report_dir(week) / "eval_report.md"
    return {
        "steps": manifest.global_step,
        "final_loss": round(float(manifest.metrics.get("loss", float("nan"))), 4),
        "promoted": (week in registry.promoted_weeks()) if report.exists() else None,
    }


def demo(args: argparse.Namespace) -> int:
    project = Path(args.project).resolve()
    home = prepare_home(instance_home(None, project), project / "dagster.yaml")
    dumps = str(Path(args.dumps).resolve()) if "://" not in args.dumps else args.dumps
    # The demo's tiny models are defaults: a user's own settings win.
    env = {**demo_models_env(home), **os.environ}
    settings = DeploymentSettings.from_env(env)
    storage = Path(settings.storage or home / "warehouse")
    models = Path(settings.models or home / "models")
    env.update({**OFFLINE_ENV, DAGSTER_HOME: str(home), **settings_env(dumps=dumps, storage=storage, models=models)})
    registry = ModelRegistry(models)
    calendar = WeekCalendar(start_date=settings.start_date)

    weeks = _closed_weeks(dumps, calendar)
    if not weeks:
        print(f"no closed feedback week in {dumps}")
        return 1
    print(f"kto-pipeline demo: {len(weeks)} weeks of feedback in {dumps}")
    print(f"Dagster instance: {home}")
    logs = home / "demo_logs"
    logs.mkdir(exist_ok=True)
    summaries = []
    for i, week in enumerate(weeks, start=1):
        started = time.monotonic()
        print(f"[{i}/{len(weeks)}] week {week}: running {args.job} …", flush=True)
        log = logs / f"{args.job}-{week}.log"
        code = execute_week(project, env, args.job, week, log, trigger="demo")
        training = _training_summary(registry, week)
        if code != 0 and training.get("promoted") is not False:
            print(log.read_text()[-4000:])
            print(f"week {week} failed (exit {code}); full log: {log}")
            return code
        # A run whose promotion gate blocked the checkpoint fails on purpose (it alerts);
        # the week is still complete, so the demo goes on.
        summary = {**_week_summary(storage, week), **training}
        summaries.append(summary)
        steps = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if k != "week")
        print(f"    done in {time.monotonic() - started:.0f}s: {steps}", flush=True)

    print()
    print(pd.DataFrame(summaries).to_string(index=False))
    print()
    print(f"Results (Parquet per asset and week): {storage}")
    print(f"Quarantine with reasons:             {storage / 'raw_feedback_quarantine'}")
    print(f"Duplicates removed, with reasons:    {storage / 'deduplicated_feedback_dropped'}")
    print(f"Checkpoints and eval reports:        {models / 'checkpoints'}, {models / 'reports'}")
    champion = registry.champion()
    print(
        f"Champion:                            {champion.checkpoint if champion else 'the base model (nothing promoted)'}"
    )
    print(f"Run logs:                            {logs}")
    print("Open the UI:")
    ui_env = {DAGSTER_HOME: str(home), **settings_env(dumps=dumps, base_model=settings.base_model)}
    print(f"    {shell_assignments(ui_env)} .venv/bin/dagster dev -w workspace.yaml")
    return 0


def recipe_overrides(text: str) -> dict:
    """`--recipe`: a JSON object of KTORecipe fields, checked here so a typo fails before week 1."""
    from kto_pipeline.train import KTORecipe

    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of recipe fields")
    try:
        KTORecipe.from_dict(overrides)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return overrides


def ablation_name(text: str) -> str:
    """`--ablate`: checked against the simulator's ablations (imported only when given)."""
    from kto_pipeline.sim.ablations import get_ablation

    try:
        return get_ablation(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def simulate(args: argparse.Namespace) -> int:
    from kto_pipeline.sim.ablations import get_ablation
    from kto_pipeline.sim.results_table import results_table
    from kto_pipeline.sim.simulation import SimulationConfig, run_simulation

    project = Path(args.project).resolve()
    home = prepare_home(instance_home(None, project), project / "dagster.yaml")
    config = SimulationConfig(
        scenario=args.scenario,
        weeks=args.weeks,
        prompts_per_week=args.prompts,
        arms=tuple(args.arms.split(",")),
        seed=args.seed,
        recipe=args.recipe,
        **({"teacher_accuracy": None} if args.no_teacher else {}),
        **({"teacher_accuracy": args.teacher_accuracy} if args.teacher_accuracy is not None else {}),
        **({"ablate": args.ablate} if args.ablate else {}),
        **({"teacher_accuracy": None} if args.ablate and not get_ablation(args.ablate).teacher else {}),
    )
    print(f"kto-pipeline simulation; Dagster instance: {home}", flush=True)
    results = run_simulation(config, project=project, home=home, say=lambda line: print(line, flush=True))
    print()
    print(results_table(results))
    print()
    root = home / "simulator" / config.scenario
    print(f"Done in {results['seconds'] / 60:.1f} min. Results: {root / 'results.json'}")
    print(f"Eval reports (Markdown + plots), one per week: {results['reports']}")
    print("Open the UI on the same instance (every week's materializations, checks and reports):")
    ui_env = {DAGSTER_HOME: str(home), **settings_env(storage=root / "warehouse", models=root / "models")}
    print(f"    {shell_assignments(ui_env)} .venv/bin/dagster dev -w workspace.yaml")
    return 0


def home_cmd(args: argparse.Namespace) -> int:
    project = Path(args.project).resolve()
    home = prepare_home(instance_home(args.home, project), project / "dagster.yaml")
    print(f"export DAGSTER_HOME={home}")
    return 0


def make_sample(args: argparse.Namespace) -> int:
    for path in build_sample(Path(args.out)):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kto-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="run the main job on every closed week of a dump folder (the bundled sample by default)"
    )
    p.add_argument("--dumps", default=str(SAMPLE_DIR), help="folder or fsspec URL of feedback dumps")
    p.add_argument("--job", default="retrain_job", help="Dagster job to run per week")
    p.add_argument("--project", default=".", help="project folder holding dagster.yaml and workspace.yaml")
    p.set_defaults(func=demo)

    p = sub.add_parser(
        "simulate",
        help="the main job: simulated weeks of thumbs → the pipeline → KTO, measured against SFT on thumbs-up",
    )
    p.add_argument(
        "--scenario",
        default="carry_bug",
        help="carry_bug (a systematic error to fix) or scarce_positives (base right ≤ 15%%)",
    )
    p.add_argument("--weeks", type=int, default=4)
    p.add_argument("--prompts", type=int, default=1500, help="fresh prompts a week (the task has 7,100 for traffic)")
    p.add_argument("--arms", default="kto,sft", help="kto, or kto,sft for the naive SFT-on-thumbs-up arm beside it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recipe",
        type=recipe_overrides,
        default={},
        help="JSON overrides of the simulator's KTO recipe (kto_pipeline/sim/recipe.py), e.g. '{\"sft_first\": false}'",
    )
    p.add_argument(
        "--teacher-accuracy",
        type=float,
        default=None,
        help="how often the simulated teacher's better answers are right (default: the simulation's, 0.9)",
    )
    p.add_argument("--no-teacher", action="store_true", help="no teacher: the synthetic top-up does not run")
    p.add_argument(
        "--ablate",
        type=ablation_name,
        help="change one step of the loop: dedup, class_weights, ... (the names and what each changes: "
        "kto_pipeline/sim/ablations.py)",
    )
    p.add_argument("--project", default=".")
    p.set_defaults(func=simulate)

    p = sub.add_parser("home", help="create DAGSTER_HOME with the project's dagster.yaml")
    p.add_argument("--home", help="folder (default: $DAGSTER_HOME or ./.dagster_home)")
    p.add_argument("--project", default=".")
    p.set_defaults(func=home_cmd)

    capture_command.add_parser(sub)

    p = sub.add_parser("make-sample", help="write the sample feedback dumps")
    p.add_argument("out", nargs="?", default=str(SAMPLE_DIR))
    p.set_defaults(func=make_sample)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
