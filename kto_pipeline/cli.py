"""`kto-pipeline`: the demo (README command 1), instance set-up, and the sample generator.

The library does not import Dagster, so the CLI drives it the way a person would: through
the `dagster` command, against the persistent instance in DAGSTER_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from kto_pipeline.dumps import list_dumps
from kto_pipeline.ingest import IngestOptions, ingest, records_kept
from kto_pipeline.sample_data import SAMPLE_DIR, build_sample
from kto_pipeline.weeks import WeekCalendar

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRANSFORMERS_OFFLINE": "1"}


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
        summary["pii_replaced"] = int(redacted["prompt"].str.count(_PLACEHOLDER).sum() + redacted["completion"].str.count(_PLACEHOLDER).sum())
    final = rows
    deduplicated = read("deduplicated_feedback")
    if deduplicated is not None:
        summary["duplicates_dropped"] = len(redacted) - len(deduplicated) if redacted is not None else None
        final = deduplicated
        summary["rows_kept"] = len(final)
    summary["desirable"] = int(final["label"].sum())
    summary["undesirable"] = int((~final["label"]).sum())
    return summary


def demo(args: argparse.Namespace) -> int:
    project = Path(args.project).resolve()
    home = prepare_home(Path(os.environ.get("DAGSTER_HOME") or project / ".dagster_home").resolve(), project / "dagster.yaml")
    dumps = str(Path(args.dumps).resolve()) if "://" not in args.dumps else args.dumps
    env = {**os.environ, **OFFLINE_ENV, "DAGSTER_HOME": str(home), "KTO_PIPELINE_DUMPS": dumps}
    storage = Path(env.get("KTO_PIPELINE_STORAGE") or home / "warehouse")
    env["KTO_PIPELINE_STORAGE"] = str(storage)
    calendar = WeekCalendar(start_date=env.get("KTO_PIPELINE_START_DATE", WeekCalendar().start_date))

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
        cmd = [
            sys.executable, "-m", "dagster", "job", "execute",
            "-m", "definitions", "-d", str(project), "-j", args.job,
            "--tags", json.dumps({"dagster/partition": week, "kto_pipeline/trigger": "demo"}),
        ]
        log = logs / f"{args.job}-{week}.log"
        with log.open("w") as fh:
            proc = subprocess.run(cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            print(log.read_text()[-4000:])
            print(f"week {week} failed (exit {proc.returncode}); full log: {log}")
            return proc.returncode
        summary = _week_summary(storage, week)
        summaries.append(summary)
        steps = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if k != "week")
        print(f"    done in {time.monotonic() - started:.0f}s: {steps}", flush=True)

    print()
    print(pd.DataFrame(summaries).to_string(index=False))
    print()
    print(f"Results (Parquet per asset and week): {storage}")
    print(f"Quarantine with reasons:             {storage / 'raw_feedback_quarantine'}")
    print(f"Duplicates removed, with reasons:    {storage / 'deduplicated_feedback_dropped'}")
    print(f"Run logs:                            {logs}")
    print("Open the UI:")
    print(f"    DAGSTER_HOME={home} KTO_PIPELINE_DUMPS={dumps} .venv/bin/dagster dev -w workspace.yaml")
    return 0


def home_cmd(args: argparse.Namespace) -> int:
    project = Path(args.project).resolve()
    home = prepare_home(Path(args.home or os.environ.get("DAGSTER_HOME") or project / ".dagster_home").resolve(), project / "dagster.yaml")
    print(f"export DAGSTER_HOME={home}")
    return 0


def make_sample(args: argparse.Namespace) -> int:
    for path in build_sample(Path(args.out)):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kto-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the main job on every closed week of a dump folder (the bundled sample by default)")
    p.add_argument("--dumps", default=str(SAMPLE_DIR), help="folder or fsspec URL of feedback dumps")
    p.add_argument("--job", default="retrain_job", help="Dagster job to run per week")
    p.add_argument("--project", default=".", help="project folder holding dagster.yaml and workspace.yaml")
    p.set_defaults(func=demo)

    p = sub.add_parser("home", help="create DAGSTER_HOME with the project's dagster.yaml")
    p.add_argument("--home", help="folder (default: $DAGSTER_HOME or ./.dagster_home)")
    p.add_argument("--project", default=".")
    p.set_defaults(func=home_cmd)

    p = sub.add_parser("make-sample", help="write the sample feedback dumps")
    p.add_argument("out", nargs="?", default=str(SAMPLE_DIR))
    p.set_defaults(func=make_sample)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
