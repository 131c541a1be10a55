"""Summed completion log-probs per sequence, through TRL's own collator and fused LM head.

torch and TRL are imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.evaluate.constants import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH
from kto_pipeline.evaluate.eval_set import EvalSet, prepare_eval_set


@contextmanager
def _fused_lm_head(model) -> Iterator[None]:
    """TRL's fused LM head on `model` for the duration (its forward is restored afterwards).

    Like KTOTrainer, the head goes on the PEFT model's base model; it projects only the
    completion positions, so (batch, length, vocab) logits are never materialised.
    """
    from trl.trainer.utils import add_fused_lm_head

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    had_own_forward = "forward" in vars(target)
    previous = vars(target).get("forward")
    add_fused_lm_head(target)
    try:
        yield
    finally:
        if had_own_forward:
            target.forward = previous
        else:
            del target.forward


def _model_device(model):
    return next(model.parameters()).device


def completion_logps(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Summed completion-token log-probs per sequence, in input order (float64).

    Batches of `batch_size` consecutive sequences are padded and truncated on the right by
    TRL's own `DataCollatorForUnpairedPreference`, and scored as `KTOTrainer` scores them:
    labels = input ids outside the completion masked to −100, the fused LM head's per-token
    log-probs summed (no length normalisation). Runs on the model's device, under
    `torch.inference_mode`, with the model in eval mode (its mode is restored afterwards).
    """
    import torch
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids differ in length")
    collator = DataCollatorForUnpairedPreference(pad_token_id=pad_token_id, max_length=max_length)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with _fused_lm_head(model), torch.inference_mode():
            for start in range(0, len(prompt_ids), batch_size):
                examples = [
                    {"prompt_ids": list(p), "completion_ids": list(c), "label": True}
                    for p, c in zip(prompt_ids[start : start + batch_size], completion_ids[start : start + batch_size])
                ]
                batch = collator(examples)
                input_ids = batch["input_ids"].to(device)
                labels = input_ids.masked_fill(batch["completion_mask"].to(device) == 0, -100)
                outputs = model(
                    input_ids=input_ids,
                    attention_mask=batch["attention_mask"].to(device),
                    labels=labels,
                    fused_lm_head=True,
                    use_cache=False,
                )
                # As TRL: prompt-learning PEFT prepends virtual tokens, keep the real positions.
                per_token = outputs.log_probs[:, -(input_ids.size(1) - 1) :]
                out.append(per_token.float().sum(-1).cpu().numpy().astype(np.float64))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


def sequence_logps(
    model,
    tokenizer,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    data_format: str = "auto",
) -> np.ndarray:
    """Summed completion log-probs of `rows` (contract rows) under `model`, one per kept row.

    Rows whose prompt alone fills `max_length` are dropped, as TRL drops them.
    """
    eval_set = prepare_eval_set(rows, tokenizer, batch_size=batch_size, max_length=max_length, data_format=data_format)
    return completion_logps(
        model,
        eval_set.prompt_ids,
        eval_set.completion_ids,
        pad_token_id=eval_set.pad_token_id,
        batch_size=batch_size,
        max_length=max_length,
    )


@dataclass(frozen=True)
class ModelLogps:
    """One model's summed log-probs on the matched sequences and on the KL (mismatched) ones."""

    matched: np.ndarray
    kl: np.ndarray


def model_logps(model, eval_set: EvalSet) -> ModelLogps:
    kwargs = dict(pad_token_id=eval_set.pad_token_id, batch_size=eval_set.batch_size, max_length=eval_set.max_length)
    return ModelLogps(
        matched=completion_logps(model, eval_set.prompt_ids, eval_set.completion_ids, **kwargs),
        kl=completion_logps(model, eval_set.prompt_ids, eval_set.kl_completion_ids, **kwargs),
    )
