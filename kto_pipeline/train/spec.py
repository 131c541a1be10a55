"""`TrainSpec`: one training as JSON, and the `--spec` entry point that runs it.

The orchestration layer builds a spec (rows as parquet paths, models, folders, class weights,
recipe overrides, lineage), writes it as `spec.json` and starts
`python -m kto_pipeline.train --spec spec.json` (or `resources.trainer_process`, its Pipes
wrapper), also under `accelerate launch`: every rank trains, rank 0 alone writes the folder
and the result. Reading a spec refuses unknown keys and missing required ones, naming them:
a typo must not silently fall back to a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.train.health import LogCallback
from kto_pipeline.train.result import TrainResult
from kto_pipeline.train.trainer import train_kto


def _check_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Unknown keys, or required fields (no default) that are absent, raise one error naming them."""
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    unknown, missing = sorted(set(data) - known), sorted(required - set(data))
    if unknown or missing:
        problems = [f"unknown key(s) {unknown}"] if unknown else []
        problems += [f"missing key(s) {missing}"] if missing else []
        raise ValueError(f"{what}: {'; '.join(problems)}; known: {sorted(known)}")


@dataclass(frozen=True)
class TrainLineage:
    """Where a week's training rows came from, as the `kto_checkpoint` asset records it."""

    week: str = field(metadata={"help": "the week being trained (partition key)"})
    weeks: list[str] = field(metadata={"help": "the weeks of the training window"})
    rows: int = field(metadata={"help": "training rows handed to the trainer"})
    desirable: int = field(metadata={"help": "of which desirable"})
    undesirable: int = field(metadata={"help": "of which undesirable"})
    sources: dict[str, int] = field(metadata={"help": "training rows per source (production, synthetic, …)"})
    init: str = field(metadata={"help": "which checkpoint the week starts from, and why"})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainLineage:
        _check_keys(cls, data, "training lineage")
        return cls(**data)


@dataclass(frozen=True)
class TrainSpec:
    """One training, JSON-able: what `run_spec` (and `python -m kto_pipeline.train`) runs."""

    train_rows: str = field(metadata={"help": "parquet file of the training rows (the contract's columns, shuffled)"})
    base_model: str = field(metadata={"help": "hub name or local folder every checkpoint chain starts from"})
    output_dir: str = field(metadata={"help": "the checkpoint folder to write"})
    work_dir: str = field(metadata={"help": "stable per week: Trainer checkpoints and caches (a rerun resumes)"})
    eval_rows: str | None = field(default=None, metadata={"help": "parquet file of held-out rows; None: no eval"})
    init_from: str | None = field(default=None, metadata={"help": "last week's checkpoint folder; None: the base"})
    recipe: dict[str, Any] = field(default_factory=dict, metadata={"help": "KTORecipe overrides"})
    desirable_weight: float = field(default=1.0, metadata={"help": "KTO's λD"})
    undesirable_weight: float = field(default=1.0, metadata={"help": "KTO's λU"})
    lineage: TrainLineage | None = field(default=None, metadata={"help": "recorded in the manifest and the card"})
    device: str | None = field(default=None, metadata={"help": '"cuda" or "cpu"; None: CUDA when available'})
    result_path: str | None = field(
        default=None, metadata={"help": "where rank 0 writes the TrainResult as JSON; None: nowhere"}
    )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["lineage"] = self.lineage.to_dict() if self.lineage is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSpec:
        _check_keys(cls, data, "training spec")
        values = dict(data)
        if values.get("lineage") is not None:
            values["lineage"] = TrainLineage.from_dict(values["lineage"])
        if values.get("recipe") is None:
            values.pop("recipe", None)
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a training spec is a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


def print_log(entry: dict[str, Any]) -> None:
    """The default log sink of the entry point: one JSON line per log, prefixed "KTO_LOG "."""
    print("KTO_LOG " + json.dumps(entry, default=str), flush=True)


def run_spec(spec: TrainSpec, on_log: LogCallback | None = print_log) -> TrainResult:
    """Run one training from a spec (row frames given as parquet paths).

    Logs go to `on_log` on rank 0 (default: JSON lines prefixed "KTO_LOG " on stdout); rank 0
    writes the result as JSON to `spec.result_path` when set.
    """
    result = train_kto(
        pd.read_parquet(spec.train_rows),
        base_model=spec.base_model,
        init_from=spec.init_from,
        output_dir=spec.output_dir,
        work_dir=spec.work_dir,
        recipe=spec.recipe,
        desirable_weight=spec.desirable_weight,
        undesirable_weight=spec.undesirable_weight,
        lineage=spec.lineage.to_dict() if spec.lineage is not None else None,
        eval_rows=pd.read_parquet(spec.eval_rows) if spec.eval_rows else None,
        on_log=on_log,
        device=spec.device,
    )
    from accelerate import PartialState

    if spec.result_path and PartialState().is_main_process:
        path = Path(spec.result_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=1, default=str))
        tmp.replace(path)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kto_pipeline.train",
        description="One weekly KTO fine-tune: curated rows in, a Hugging Face checkpoint folder out.",
    )
    parser.add_argument("--spec", required=True, help="JSON file: see kto_pipeline.train.spec.TrainSpec")
    ns = parser.parse_args(argv)
    result = run_spec(TrainSpec.from_json(Path(ns.spec).read_text()))
    return 0 if result.healthy else 3
