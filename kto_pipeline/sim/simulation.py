"""The main job: weeks of simulated production → the Dagster pipeline → KTO → a better model.

Each simulated week:
1. the KTO arm's champion (the base model in week one) answers fresh prompts; the oracle user
   gives thumbs, edits some wrong answers, pastes PII and repeats questions; the app records
   each answer and the user's thumb or edit through the capture service (a real server on
   loopback, `capture_traffic`), whose segments land in the dumps folder;
2. the week is materialized through Dagster (`dagster job execute -j retrain_job`, the same
   assets and the same persistent instance as production): ingest, redaction, dedup, scoring,
   balance, KTO training from last week's checkpoint (Pipes process), the eval report and its
   promotion gate; the run config carries the toy task's settings (`SimulationConfig`:
   embedding-based dedup and DEITA diversity off, a two-week training window, answers of at
   most 4 tokens), the assets' production defaults stay as they are; the eval report's judge
   is the oracle, served for the whole job as an OpenAI-compatible endpoint on a free
   loopback port (`judge_server`), so the production judge path (client, template, parsing,
   both orders) runs for real; the same endpoint serves the simulated teacher (`teacher`) that
   the synthetic top-up's distilabel pipeline asks for better or flawed answers; there is no
   DEITA scorer (see the README: no meaningful one exists for this task);
3. the new checkpoint and the champion are measured on a fixed held-out prompt set (the
   oracle knows the right answers), and next week's traffic uses the champion.

The naive arm runs beside it on the same prompts: its champion answers, the same user judges,
and it is fine-tuned on the thumbs-up rows (edits included) of the same weeks as the KTO
arm's training window for as many steps as the KTO arm took. It is not curated by the pipeline: it stands for "just SFT on what users liked".

The library does not import Dagster; like the demo it drives the `dagster` command.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.app.dagster_command import OFFLINE_ENV, execute_week
from kto_pipeline.config import DAGSTER_HOME, settings_env
from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.models.manifest import collapse_of, read_manifest
from kto_pipeline.models.registry import EVAL_SUMMARY, ModelRegistry
from kto_pipeline.sim import (
    build_base_model,
    bundled_base,
    evaluate_model,
    get_scenario,
    simulate_week,
    task_split,
    tiny_kto_recipe,
)
from kto_pipeline.sim.capture_traffic import send_week_through_capture
from kto_pipeline.sim.config import SimulationConfig
from kto_pipeline.sim.judge_server import RunningJudge, serve_oracle_judge
from kto_pipeline.sim.pii_audit import leaked_pii, pasted_pii
from kto_pipeline.sim.run_config import week_run_config
from kto_pipeline.sim.sft_arm import SFTArm, SFTArmWorker
from kto_pipeline.sim.teacher import SimTeacher

Say = Callable[[str], None]


def simulated_weeks(config: SimulationConfig, calendar: WeekCalendar) -> list[str]:
    """The last `weeks` closed weeks (a week is a Dagster partition only once it has closed)."""
    last = (
        config.end_week
        or (pd.Timestamp(calendar.week_of(pd.Timestamp.now(tz="UTC"))) - pd.Timedelta(weeks=1)).date().isoformat()
    )
    first = pd.Timestamp(last) - pd.Timedelta(weeks=config.weeks - 1)
    weeks = [(first + pd.Timedelta(weeks=k)).date().isoformat() for k in range(config.weeks)]
    if weeks[0] < calendar.first_week:
        raise ValueError(f"the simulation would start at {weeks[0]}, before the first week {calendar.first_week}")
    return weeks


def _eval_numbers(registry: ModelRegistry, week: str) -> dict[str, Any]:
    path = registry.report_dir(week) / EVAL_SUMMARY
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    candidate = summary["result"]["models"].get("candidate", {})
    win = ((summary.get("answers") or {}).get("win_rate")) or {}
    return {
        "reward_accuracy": candidate.get("reward_accuracy"),
        "margin": candidate.get("margin"),
        "kl": candidate.get("kl"),
        "win_rate": win.get("estimate"),
        "win_rate_low": win.get("low"),
        "win_rate_high": win.get("high"),
        "promoted": bool(summary["decision"]["promote"]),
        "gate": "; ".join(summary["decision"]["reasons"]),
    }


def run_simulation(config: SimulationConfig, *, project: Path, home: Path, say: Say = print) -> dict[str, Any]:
    """Run the main job; returns (and writes under `<home>/simulator/<scenario>/`) the results."""
    teacher = None if config.teacher_accuracy is None else SimTeacher(config.teacher_accuracy, seed=config.seed)
    with serve_oracle_judge(teacher=teacher) as judge:
        serves = "oracle judge" + (f" and teacher (accuracy {teacher.accuracy})" if teacher else ", no teacher")
        say(f"{serves} serving {judge.base_url} (OpenAI-compatible chat completions)")
        results = _run(config, project=project, home=home, say=say, judge=judge)
        results["judge_requests"] = dict(judge.judge.counts)
        results["teacher_requests"] = dict(teacher.counts) if teacher else None
    root = home / "simulator" / get_scenario(config.scenario).name
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def _run(config: SimulationConfig, *, project: Path, home: Path, say: Say, judge: RunningJudge) -> dict[str, Any]:
    started = time.monotonic()
    scenario = get_scenario(config.scenario)
    root = home / "simulator" / scenario.name
    for sub in ("dumps", "warehouse", "models", "sft", "logs"):
        shutil.rmtree(root / sub, ignore_errors=True)  # a rerun starts the weeks afresh
    dumps, models, logs = root / "dumps", root / "models", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    calendar = WeekCalendar()
    weeks = simulated_weeks(config, calendar)
    split = task_split()
    if config.weeks > split.max_weeks(config.prompts_per_week):
        raise ValueError(f"{config.weeks} weeks of {config.prompts_per_week} fresh prompts exceed the task's pool")

    say(
        f"scenario {scenario.name}: {config.weeks} weeks {weeks[0]} … {weeks[-1]}, {config.prompts_per_week} prompts a week, arms {', '.join(config.arms)}"
    )
    t0 = time.monotonic()
    base = bundled_base(scenario) or build_base_model(
        scenario, home / "simulator" / "base_models", on_progress=_progress(say)
    )
    base_report = evaluate_model(base, config.eval_samples)
    say(
        f"base model {base} ({time.monotonic() - t0:.0f}s): held-out accuracy {base_report.accuracy:.3f} (greedy {base_report.greedy_accuracy:.3f}, carry greedy {base_report.carry_greedy_accuracy:.3f})"
    )

    recipe = tiny_kto_recipe({"seed": config.seed, **config.recipe})  # the simulation seed seeds KTO too
    env = {
        **os.environ,
        **OFFLINE_ENV,
        DAGSTER_HOME: str(home),
        **settings_env(
            dumps=dumps,
            storage=root / "warehouse",
            models=models,
            base_model=base,
            trainer_device="cpu",
            trainer_recipe=recipe,
            scorer_backend="none",
            teacher_kind="none",
            # A 0.5M-parameter model trains several times faster on one thread than on two busy ones.
            trainer_threads=1,
        ),
    }
    registry = ModelRegistry(models)
    reports = {str(base): base_report}
    arm = None
    if "sft" in config.arms:
        arm = SFTArmWorker(
            SFTArm(
                champion=str(base),
                root=root / "sft",
                user=config.user,
                seed=config.seed,
                window_weeks=config.window_weeks,
                eval_samples=config.eval_samples,
                lr=float(recipe["learning_rate"]),
                batch=int(recipe["per_device_train_batch_size"]),
            )
        )
    sft_futures: list[Future] = []
    rows: list[dict[str, Any]] = []
    try:
        for i, week in enumerate(weeks):
            t_week = time.monotonic()
            champion = registry.champion()
            kto_champion = champion.checkpoint if champion else str(base)
            prompts = split.week_prompts(i, config.prompts_per_week)
            traffic = simulate_week(
                kto_champion,
                prompts,
                week,
                user=config.user,
                seed=config.seed,
                model_version=champion.week if champion else "base",
            )
            send_week_through_capture(traffic.records, dumps)
            stats = traffic.stats()
            say(
                f"[week {i + 1}/{len(weeks)} {week}] KTO champion {champion.week if champion else 'base'} served {stats['records']} answers: {stats['true_accuracy']:.3f} right, thumbs up {stats['thumbs_up_rate']:.3f}; running the pipeline …"
            )
            log = logs / f"retrain_job-{week}.log"
            code = execute_week(
                project,
                env,
                "retrain_job",
                week,
                log,
                trigger="simulation",
                run_config=week_run_config(config, judge, dumps),
            )
            numbers = _eval_numbers(registry, week)
            if code != 0 and numbers.get("promoted") is not False:
                raise RuntimeError(
                    f"the pipeline failed for week {week} (exit {code}); see {log}:\n{log.read_text()[-3000:]}"
                )
            pasted = pasted_pii([r["prompt"] for r in traffic.records])
            redacted_file = root / "warehouse" / "redacted_feedback" / f"{week}.parquet"
            leaked = leaked_pii(pd.read_parquet(redacted_file)) if redacted_file.exists() else None
            synthetic_file = root / "warehouse" / "synthetic_topup" / f"{week}.parquet"
            synthetic = pd.read_parquet(synthetic_file) if synthetic_file.exists() else None
            checkpoint = registry.checkpoint(week)
            manifest = read_manifest(checkpoint)
            train_rows = manifest.rows.get("train") if manifest is not None else None
            steps_trained = manifest.global_step if manifest is not None else None
            candidate = evaluate_model(checkpoint, config.eval_samples)
            reports[str(checkpoint)] = candidate
            new_champion = registry.champion()
            champion_report = reports[new_champion.checkpoint] if new_champion else base_report
            rows.append(
                {
                    "week": week,
                    "arm": "kto",
                    "served_by": champion.week if champion else "base",
                    "traffic_accuracy": stats["true_accuracy"],
                    "thumbs_up_rate": stats["thumbs_up_rate"],
                    "train_rows": train_rows,
                    "steps": steps_trained,
                    "candidate_accuracy": candidate.accuracy,
                    "candidate_carry_greedy": candidate.carry_greedy_accuracy,
                    "reward_accuracy": numbers.get("reward_accuracy"),
                    "margin": numbers.get("margin"),
                    "win_rate": numbers.get("win_rate"),
                    "win_rate_low": numbers.get("win_rate_low"),
                    "win_rate_high": numbers.get("win_rate_high"),
                    "collapsed": collapse_of(manifest) is not None,
                    "promoted": numbers.get("promoted"),
                    "champion_accuracy": champion_report.accuracy,
                    "synthetic_rows": None if synthetic is None else len(synthetic),
                    "synthetic_desirable": None if synthetic is None else int(synthetic["label"].astype(bool).sum()),
                    "pii_pasted": sum(pasted.values()),
                    "pii_leaked": sum(leaked.values()) if leaked is not None else None,
                    "pii_leaked_by_type": leaked,
                }
            )
            say(
                f"    redaction: {sum(pasted.values())} pasted PII values {pasted}; left in redacted_feedback: {leaked}"
            )
            if synthetic is not None:
                say(
                    f"    synthetic top-up: {len(synthetic)} teacher rows kept ({int(synthetic['label'].astype(bool).sum())} desirable)"
                )
            say(
                f"    KTO: {steps_trained} steps on {train_rows} rows; candidate held-out {candidate.accuracy:.3f}; "
                f"reward accuracy {_f(numbers.get('reward_accuracy'))}, judge win rate {_f(numbers.get('win_rate'))} "
                f"[{_f(numbers.get('win_rate_low'))}, {_f(numbers.get('win_rate_high'))}], "
                f"{'promoted' if numbers.get('promoted') else 'NOT promoted'}; champion held-out {champion_report.accuracy:.3f}"
            )

            if arm is not None:
                window = weeks[max(0, i + 1 - config.window_weeks) : i + 1]
                sft_futures.append(arm.submit(i, week, prompts, int(steps_trained or 1), window))
            say(f"    week done in {time.monotonic() - t_week:.0f}s")

    except BaseException:
        if arm is not None:
            arm.close()
        raise
    if arm is not None:
        try:
            sft_rows = [future.result() for future in sft_futures]
        finally:
            arm.close()
        for row in sft_rows:
            say(f"[SFT on thumbs-up {row['week']}] {row['steps']} steps; held-out {row['champion_accuracy']:.3f}")
        kto_rows, rows = rows, []
        for kto_row, sft_row in zip(kto_rows, sft_rows, strict=True):
            rows += [kto_row, sft_row]

    results = {
        "config": {**asdict(config), "user": asdict(config.user)},
        "scenario": asdict(scenario) if hasattr(scenario, "__dataclass_fields__") else scenario.name,
        "weeks": weeks,
        "base": {"path": str(base), **base_report.to_dict()},
        "rows": rows,
        "recipe": recipe,
        "seconds": round(time.monotonic() - started, 1),
        "reports": str(models / "reports"),
        "dagster_home": str(home),
    }
    return results


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _progress(say: Say) -> Callable[[int, float], None]:
    last = [time.monotonic()]

    def report(step: int, loss: float) -> None:
        # Base-model pretraining runs for minutes on a small CPU (once: it is cached): a line every 20 s.
        if time.monotonic() - last[0] > 20:
            last[0] = time.monotonic()
            say(f"    pretraining the base model (first run only): step {step}, loss {loss:.3f}")

    return report
