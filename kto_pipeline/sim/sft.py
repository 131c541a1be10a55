"""The naive arm: supervised fine-tuning on the thumbs-up rows only.

What a team without KTO would do with the same feedback: keep the desirable rows (thumbs-ups
and users' edits), drop the thumbs-downs, and fine-tune on them with plain cross-entropy on
the completion (prompt tokens are context, not targets). A plain torch loop, as in the
feasibility prototype (TRL's SFTTrainer adds nothing at this size), with the same batch and
number of steps as the week's KTO run so the two arms get equal compute. Each random batch
is computed in two length groups (`_length_groups`): the same step, with less padding.

The output is a full checkpoint folder in the pipeline's format (model, tokenizer and
`kto_checkpoint.json` with kind "full"), so `checkpoints.load_causal_lm`, the serving sampler
and the evaluation code load it like a KTO checkpoint. Written atomically; a call whose
output folder already holds the same training (same fingerprint) returns it untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer, replace_folder
from kto_pipeline.models.manifest import CheckpointManifest, read_manifest, write_manifest
from kto_pipeline.sim.runtime import torch_threads

IGNORE_INDEX = -100
ARM = "sft_positives"


def positive_examples(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(prompt, completion) of every desirable example.

    Takes pipeline rows (label True covers thumbs-ups and edit rows) or raw contract records
    (a record with `edited_completion` contributes the edit, whatever its thumb).
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    out = []
    for rec in records:
        edit = rec.get("edited_completion")
        if not is_missing(edit):
            out.append((str(rec["prompt"]), str(edit)))
        elif bool(rec["label"]):
            out.append((str(rec["prompt"]), str(rec["completion"])))
    return out


def _encode(tokenizer: Any, examples: Sequence[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(ids of prompt + completion + EOS, prompt length) per example, tokenised as TRL does
    for plain strings (prompt and completion concatenated as text, EOS appended)."""
    out = []
    for prompt, completion in examples:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((full_ids, len(prompt_ids)))
    return out


def _batch(encoded: Sequence[tuple[list[int], int]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, plen) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, plen : len(ids)] = torch.tensor(ids[plen:])
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def _length_groups(
    batch: Sequence[tuple[list[int], int]],
) -> list[tuple[list[tuple[list[int], int]], float]]:
    """The batch as at most two groups of similar length, each with its share of target tokens.

    The batch's loss is the mean over its target tokens, so the groups' means weighted by their
    token shares add up to it and their gradients to its gradient: the same step up to float
    rounding (losses agree to 4e-7 over 100 steps), without padding the bare sums of a random
    batch to its PII-wrapped prompts (~4x longer): half the time.
    """
    rows = sorted(batch, key=lambda e: len(e[0]))
    lengths = [len(ids) for ids, _ in rows]
    n = len(rows)
    # Padded area if the sorted rows are cut after k (k = n: one group).
    cut = min(range(1, n + 1), key=lambda k: k * lengths[k - 1] + (n - k) * lengths[-1])
    groups = [rows[:cut], rows[cut:]] if cut < n else [rows]
    targets = sum(len(ids) - plen for ids, plen in rows)
    return [(g, sum(len(ids) - plen for ids, plen in g) / targets) for g in groups]


def _backward(model: Any, parts: Sequence[tuple[Sequence[tuple[list[int], int]], float]], pad_id: int) -> float:
    """Accumulate the gradients of the weighted parts of one batch; the batch's loss."""
    loss = 0.0
    for part, weight in parts:
        input_ids, mask, labels = _batch(part, pad_id)
        part_loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss * weight
        part_loss.backward()
        loss += part_loss.item()
    return loss


def _batches(n: int, batch: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`steps` index batches: seeded epochs, reshuffled each epoch (unlike TRL's KTO order)."""
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(n)
        out.extend(order[i : i + batch] for i in range(0, n, batch))
    return out[:steps]


def _fingerprint(model_ref: str, examples: Sequence[tuple[str, str]], settings: dict[str, Any]) -> str:
    manifest = read_manifest(model_ref)
    identity = manifest.fingerprint if manifest is not None else None
    payload = json.dumps(
        {"arm": ARM, "init": [model_ref, identity], "examples": examples, "settings": settings}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def train_sft_on_positives(
    model_ref: str | os.PathLike,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    steps: int,
    output_dir: str | os.PathLike,
    lr: float = 5e-5,
    batch: int = 32,
    seed: int = 0,
    weeks: Sequence[str] = (),
    threads: int | None = 1,
) -> Path:
    """Fine-tune `model_ref` on the desirable examples of `rows` for `steps` AdamW steps
    (constant `lr`, batches of `batch`) and write a full checkpoint folder at `output_dir`."""
    import torch

    model_ref, output_dir = str(model_ref), Path(output_dir)
    examples = positive_examples(rows)
    if not examples:
        raise ValueError("no desirable rows to fine-tune on")
    if steps < 1 or batch < 1:
        raise ValueError("steps and batch must be ≥ 1")
    settings = {"steps": steps, "lr": lr, "batch": batch, "seed": seed, "batch_parts": "length_groups"}
    fingerprint = _fingerprint(model_ref, examples, settings)
    existing = read_manifest(output_dir)
    if existing is not None and existing.fingerprint == fingerprint:
        return output_dir

    t0 = time.monotonic()
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_ref)
    model = load_causal_lm(model_ref, trainable=True)
    if hasattr(model, "merge_and_unload"):  # continuing from a LoRA checkpoint: train it merged
        model = model.merge_and_unload()
    model.train()
    encoded = _encode(tokenizer, examples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    with torch_threads(threads):
        for idx in _batches(len(encoded), batch, steps, np.random.default_rng(seed)):
            optimizer.zero_grad(set_to_none=True)
            losses.append(_backward(model, _length_groups([encoded[i] for i in idx]), tokenizer.pad_token_id))
            optimizer.step()
    model.eval()

    init_manifest = read_manifest(model_ref)
    manifest = CheckpointManifest(
        kind="full",
        arm=ARM,
        base_model=str(init_manifest.base_model) if init_manifest is not None else model_ref,
        init_from=model_ref,
        weeks=sorted(set(weeks) | set(init_manifest.weeks if init_manifest is not None else [])),
        global_step=steps,
        recipe=settings,
        rows={"train": len(examples), "desirable": len(examples), "undesirable": 0},
        metrics={"loss_first": losses[0], "loss_last": float(np.mean(losses[-10:]))},
        health={"healthy": bool(np.isfinite(losses).all()), "problems": [], "collapse": {"collapsed": False}},
        fingerprint=fingerprint,
        timings={"total": round(time.monotonic() - t0, 2)},
    )
    _write_folder(output_dir, model, tokenizer, manifest)
    return output_dir


def _write_folder(output_dir: Path, model: Any, tokenizer: Any, manifest: CheckpointManifest) -> None:
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        write_manifest(staging, manifest)  # last: marks a complete folder
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
