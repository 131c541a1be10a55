"""Held-out rows → TRL examples → token ids, tokenised and filtered exactly as TRL's `KTOTrainer` does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.evaluate.constants import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH
from kto_pipeline.train.examples import choose_data_format, trl_example


def _row_list(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)


def tokenize_example(example: Mapping[str, Any], tokenizer) -> tuple[list[int], list[int]]:
    """(prompt_ids, completion_ids) of a TRL example, as `KTOTrainer._prepare_dataset` builds them.

    TRL 1.16 (trl/trainer/kto_trainer.py, `_prepare_dataset`): plain-text completions get the
    EOS token appended as text unless they already end with it; the prompt and prompt +
    completion are tokenised separately with `trl.data_utils._tokenize` (chat template with
    `add_generation_prompt=True` for the conversational prompt, `tools=None`); the completion
    starts where the two token sequences diverge (`common_prefix_length`). We call the same
    helpers rather than re-implementing them.
    """
    from trl.data_utils import _tokenize, common_prefix_length, is_conversational

    prompt, completion = example["prompt"], example["completion"]
    if is_conversational(example):
        prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True, tools=None)["input_ids"]
        full_ids = _tokenize(tokenizer, prompt + completion, tools=None)["input_ids"]
    else:
        if not completion.endswith(tokenizer.eos_token):
            completion = completion + tokenizer.eos_token
        prompt_ids = _tokenize(tokenizer, prompt)["input_ids"]
        full_ids = _tokenize(tokenizer, prompt + completion)["input_ids"]
    prompt_len = common_prefix_length(prompt_ids, full_ids)
    return list(prompt_ids[:prompt_len]), list(full_ids[prompt_len:])


def rotate_within_blocks(items: Sequence[Any], block_size: int) -> list[Any]:
    """TRL's KL completions: (y1..yn) → (yn, y1, .., yn−1) inside each consecutive block."""
    out: list[Any] = []
    for start in range(0, len(items), block_size):
        block = list(items[start : start + block_size])
        out.extend(block[-1:] + block[:-1])
    return out


@dataclass(frozen=True)
class EvalSet:
    """Held-out rows tokenised once, in row order, with their KL (mismatched) completions."""

    row_ids: tuple[str, ...]
    labels: np.ndarray  # bool, one per kept row
    prompt_ids: tuple[tuple[int, ...], ...]
    completion_ids: tuple[tuple[int, ...], ...]
    kl_completion_ids: tuple[tuple[int, ...], ...]
    batch_size: int
    max_length: int | None
    pad_token_id: int
    n_dropped: int  # rows whose prompt alone fills max_length (TRL drops them too)
    data_format: str  # "conversational" or "plain"

    def __len__(self) -> int:
        return len(self.row_ids)

    def blocks(self) -> list[slice]:
        """The KL blocks, which are also the forward batches (as in TRL)."""
        return [slice(s, min(s + self.batch_size, len(self))) for s in range(0, len(self), self.batch_size)]


def prepare_eval_set(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    tokenizer,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    data_format: str = "auto",
) -> EvalSet:
    """Tokenise rows like TRL; drop those whose prompt alone fills `max_length` (TRL filters
    them before building KL pairs, so the rotation below sees the same rows it does)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = _row_list(rows)
    data_format = choose_data_format(rows, tokenizer, data_format)
    row_ids, labels, prompts, completions = [], [], [], []
    dropped = 0
    for i, row in enumerate(rows):
        example = trl_example(row, data_format)
        prompt_ids, completion_ids = tokenize_example(example, tokenizer)
        if max_length is not None and len(prompt_ids) >= max_length:
            dropped += 1
            continue
        rid = row.get("row_id")
        row_ids.append(str(i) if is_missing(rid) else str(rid))
        labels.append(example["label"])
        prompts.append(tuple(prompt_ids))
        completions.append(tuple(completion_ids))
    return EvalSet(
        row_ids=tuple(row_ids),
        labels=np.asarray(labels, dtype=bool),
        prompt_ids=tuple(prompts),
        completion_ids=tuple(completions),
        kl_completion_ids=tuple(rotate_within_blocks(completions, batch_size)),
        batch_size=batch_size,
        max_length=max_length,
        pad_token_id=int(tokenizer.pad_token_id),
        n_dropped=dropped,
        data_format=data_format,
    )
