"""Contract rows as the examples TRL's KTOTrainer takes, one rule for training and evaluation.

TRL takes one format per dataset (it reads it from the first row): conversational when any
row has `prompt_messages` and the tokenizer has a chat template (prompt = the messages, a row
without any becoming one user message; completion = one assistant message), else plain
strings (the rendered prompt text; TRL appends EOS to the completion). Training and the eval
report must choose alike, or the eval's log-probs are of other token sequences.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from kto_pipeline.core.missing import is_missing

DATA_FORMATS = ("auto", "conversational", "plain")


def choose_data_format(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], tokenizer: Any, requested: str = "auto"
) -> str:
    """ "conversational" or "plain" for a whole dataset (see the module docstring)."""
    if requested not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {requested!r}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "conversational" and not has_template:
        raise ValueError("data_format='conversational' needs a tokenizer with a chat template")
    if requested != "auto":
        return requested
    if isinstance(rows, pd.DataFrame):
        messages = rows["prompt_messages"].tolist() if "prompt_messages" in rows.columns else []
    else:
        messages = [row.get("prompt_messages") for row in rows]
    any_messages = any(not is_missing(m) for m in messages)
    return "conversational" if any_messages and has_template else "plain"


def trl_example(row: Mapping[str, Any], data_format: str = "conversational") -> dict[str, Any]:
    """A contract row → the `{prompt, completion, label}` example TRL's KTOTrainer takes."""
    if data_format == "conversational":
        messages = row.get("prompt_messages")
        if is_missing(messages):
            prompt: Any = [{"role": "user", "content": str(row["prompt"])}]
        else:
            parsed = json.loads(messages) if isinstance(messages, str) else list(messages)
            prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in parsed]
        completion: Any = [{"role": "assistant", "content": str(row["completion"])}]
    elif data_format == "plain":
        prompt, completion = str(row["prompt"]), str(row["completion"])
    else:
        raise ValueError(f"data_format must be 'conversational' or 'plain', got {data_format!r}")
    return {"prompt": prompt, "completion": completion, "label": bool(row["label"])}
