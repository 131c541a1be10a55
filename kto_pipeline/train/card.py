"""The checkpoint's README.md: a Hugging Face model card built from its manifest."""

from __future__ import annotations

import json
from typing import Any

from kto_pipeline.models.manifest import CheckpointManifest


def _yaml_str(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def model_card(manifest: CheckpointManifest) -> str:
    """README.md: YAML front matter for the Hub, then lineage, recipe, metrics and timings."""
    run = manifest.kto
    if run is None:
        raise ValueError("a model card needs the KTO trainer's run record (manifest.kto)")
    data, recipe, health = run.data, manifest.recipe, manifest.health
    library = "peft" if manifest.is_lora else "transformers"
    lines = [
        "---",
        f"base_model: {_yaml_str(manifest.base_model)}",
        f"library_name: {library}",
        "tags:",
        "- kto",
        "- trl",
        "---",
        "",
        f"# KTO fine-tune ({manifest.kind}) for week(s) {', '.join(manifest.weeks) or 'unknown'}",
        "",
        f"Base model: `{manifest.base_model}`. Initialised from: `{manifest.init_from or manifest.base_model}` "
        "(also the reference model).",
        "",
    ]
    if not health["healthy"]:
        lines += [f"**UNHEALTHY — do not promote:** {'; '.join(health['problems'])}", ""]
    lines += [
        "## Data lineage",
        "",
        f"- weeks: {', '.join(manifest.weeks)}",
        f"- rows trained: {data['rows']} ({data['desirable']} desirable, {data['undesirable']} undesirable); "
        f"rows in: {data['rows_in']}; dropped (prompt ≥ max_length): {data['dropped_prompt_too_long']}",
        f"- per source: {json.dumps(data['per_source'])}",
        f"- per signal: {json.dumps(data['per_signal'])}",
        f"- per week: {json.dumps(data['per_week'])}",
        f"- class weights: λD = {run.weights['desirable']}, λU = {run.weights['undesirable']} "
        f"(λD·nD/(λU·nU) = {run.weights['ratio']})",
        f"- data format: {data['data_format']}; padding {data['padding_fraction']:.1%} "
        f"(unbucketed {data['padding_fraction_unbucketed']:.1%})",
        f"- lineage: `{json.dumps(run.lineage, sort_keys=True, default=str)}`",
        "",
        "## Recipe",
        "",
        "| field | value |",
        "| --- | --- |",
        *[f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(recipe.items())],
        "",
        "## Results",
        "",
        "| metric | initial | final |",
        "| --- | --- | --- |",
        *[f"| {k} | {_fmt(run.initial_metrics.get(k))} | {_fmt(v)} |" for k, v in sorted(manifest.metrics.items())],
        "",
    ]
    if run.eval_metrics:
        lines += ["Held-out: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(run.eval_metrics.items())), ""]
    timings = manifest.timings
    lines += [
        "## Training",
        "",
        f"- global step {manifest.global_step}; resumed from step {run.resumed_from_step}",
        f"- time: {timings.get('total', 0):.1f} s total "
        f"(setup incl. reference precompute {timings.get('setup', 0):.1f} s, "
        f"train {timings.get('train', 0):.1f} s)",
        f"- health: {'healthy' if health['healthy'] else 'unhealthy'}",
        f"- trl {run.versions.get('trl')}, transformers {run.versions.get('transformers')}, "
        f"peft {run.versions.get('peft')}, torch {run.versions.get('torch')}",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def library_versions() -> dict[str, str]:
    """The versions of the training stack, for the manifest and the card."""
    import peft
    import torch
    import transformers
    import trl

    return {
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch": torch.__version__,
    }
