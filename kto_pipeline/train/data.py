"""Training rows → TRL-ready records in training order, and what preparation did to them.

One data format per dataset (see `examples.choose_data_format`); rows whose prompt alone
reaches `max_length` are dropped here, with TRL's own tokenisation, before bucketing (TRL would
otherwise drop them after our blocks were cut and shift every block boundary); with
`length_bucketing` the rows are sorted by token length, cut into blocks of
`per_device_train_batch_size` and the whole blocks shuffled, so each micro-batch (and TRL's KL
rotation block) holds similar lengths.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.train.examples import choose_data_format, trl_example
from kto_pipeline.train.recipe import KTORecipe


@dataclass
class PreparedData:
    """TRL-ready records in training order, plus what preparation did to them."""

    records: list[dict[str, Any]]  # {prompt, completion, label} in the order TRL will train
    data_format: str  # "conversational" | "plain"
    source_index: list[int]  # position of each record in the input frame
    lengths: list[int]  # prompt+completion tokens (capped at max_length)
    dropped_prompt_too_long: int
    padding_fraction: float  # pad share of the main sequences in per-device batches, as ordered
    padding_fraction_unbucketed: float  # the same in the incoming order


def rows_to_records(rows: pd.DataFrame, data_format: str) -> list[dict[str, Any]]:
    """Contract rows → TRL unpaired-preference records in one format."""
    missing = {"prompt", "completion", "label"} - set(rows.columns)
    if missing:
        raise ValueError(f"training rows lack column(s) {sorted(missing)}")
    return [trl_example(row, data_format) for row in rows.to_dict("records")]


def token_lengths(
    records: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """(prompt tokens, prompt+completion tokens) per record, tokenised exactly as TRL 1.16 does.

    Uses TRL's own helpers so that our too-long filter agrees with the one TRL applies later.
    """
    from trl.data_utils import _tokenize, common_prefix_length  # TRL's tokenisation, pinned 1.16

    eos = tokenizer.eos_token or ""
    prompt_lens, total_lens = [], []
    for rec in records:
        if isinstance(rec["prompt"], list):
            prompt_ids = _tokenize(tokenizer, rec["prompt"], add_generation_prompt=True)["input_ids"]
            full_ids = _tokenize(tokenizer, rec["prompt"] + rec["completion"])["input_ids"]
        else:
            completion = rec["completion"] if rec["completion"].endswith(eos) else rec["completion"] + eos
            prompt_ids = _tokenize(tokenizer, rec["prompt"])["input_ids"]
            full_ids = _tokenize(tokenizer, rec["prompt"] + completion)["input_ids"]
        plen = common_prefix_length(prompt_ids, full_ids)
        prompt_lens.append(plen)
        total = len(full_ids) if max_length is None else min(len(full_ids), max_length)
        total_lens.append(total)
    return prompt_lens, total_lens


def length_bucket_order(lengths: Sequence[int], block_size: int, seed: int) -> list[int]:
    """A permutation of range(len(lengths)): blocks of `block_size` similar lengths, blocks shuffled.

    Sorting is stable, so equal lengths keep their incoming (already shuffled) order. The
    remainder (fewer than `block_size` rows) stays at the end, so every block stays aligned with
    TRL's micro-batches and KL rotation blocks.
    """
    if block_size < 1:
        raise ValueError("block_size must be ≥ 1")
    by_length = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n_full = len(by_length) // block_size * block_size
    blocks = [by_length[i : i + block_size] for i in range(0, n_full, block_size)]
    random.Random(seed).shuffle(blocks)
    return [i for block in blocks for i in block] + by_length[n_full:]


def padding_fraction(lengths: Sequence[int], block_size: int) -> float:
    """Share of pad tokens when consecutive `block_size` rows are padded to their longest."""
    padded = sum(
        max(lengths[i : i + block_size]) * len(lengths[i : i + block_size]) for i in range(0, len(lengths), block_size)
    )
    return 0.0 if padded == 0 else 1.0 - sum(lengths) / padded


def prepare_records(
    rows: pd.DataFrame, tokenizer: Any, recipe: KTORecipe, *, bucket: bool | None = None
) -> PreparedData:
    """Rows → records in training order: format, too-long drop, optional length bucketing."""
    data_format = choose_data_format(rows, tokenizer, recipe.data_format)
    records = rows_to_records(rows, data_format)
    prompt_lens, total_lens = token_lengths(records, tokenizer, recipe.max_length)
    keep = [i for i, plen in enumerate(prompt_lens) if plen < recipe.max_length]
    dropped = len(records) - len(keep)
    lengths = [total_lens[i] for i in keep]
    block = recipe.per_device_train_batch_size
    unbucketed = padding_fraction(lengths, block)
    order = list(range(len(keep)))
    if recipe.length_bucketing if bucket is None else bucket:
        order = length_bucket_order(lengths, block, recipe.seed)
    ordered_lengths = [lengths[j] for j in order]
    return PreparedData(
        records=[records[keep[j]] for j in order],
        data_format=data_format,
        source_index=[keep[j] for j in order],
        lengths=ordered_lengths,
        dropped_prompt_too_long=dropped,
        padding_fraction=padding_fraction(ordered_lengths, block),
        padding_fraction_unbucketed=unbucketed,
    )


def data_summary(rows: pd.DataFrame, prepared: PreparedData) -> dict[str, Any]:
    """Row counts per class, source, signal and week of the rows actually trained."""
    used = rows.iloc[prepared.source_index]
    labels = used["label"].astype(bool)

    def counts(col: str) -> dict[str, int]:
        if col not in used.columns:
            return {}
        return {str(k): int(v) for k, v in sorted(Counter(used[col].fillna("unknown").astype(str)).items())}

    return {
        "rows_in": int(len(rows)),
        "rows": int(len(used)),
        "desirable": int(labels.sum()),
        "undesirable": int((~labels).sum()),
        "dropped_prompt_too_long": prepared.dropped_prompt_too_long,
        "per_source": counts("source"),
        "per_signal": counts("signal"),
        "per_week": counts("week"),
        "data_format": prepared.data_format,
        "padding_fraction": round(prepared.padding_fraction, 4),
        "padding_fraction_unbucketed": round(prepared.padding_fraction_unbucketed, 4),
        "tokens": int(sum(prepared.lengths)),
    }


def to_disk_dataset(records: list[dict[str, Any]], folder: Path, state):
    """A Dataset backed by files under `folder`, so TRL's map/precompute caches land there."""
    from datasets import Dataset, load_from_disk

    with state.main_process_first():
        if not (folder / "state.json").is_file():
            if state.is_main_process:
                tmp = folder.with_name(folder.name + f".tmp-{uuid.uuid4().hex[:8]}")
                Dataset.from_list(records).save_to_disk(str(tmp))
                tmp.rename(folder)
    return load_from_disk(str(folder))
