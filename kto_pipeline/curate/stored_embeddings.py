"""The week's rows' SemDeDup vectors, reused by the steps after dedup instead of embedding again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from kto_pipeline.curate.dedup import DedupHistory


def stored_or_fresh_embeddings(
    rows: pd.DataFrame, history: DedupHistory | None, embed_rows: Callable[[pd.DataFrame], np.ndarray]
) -> tuple[np.ndarray, int]:
    """One vector per row of `rows`: the one the week's dedup history stored for its row_id, else
    embedded now by `embed_rows` (rows deduplicated by an older run that stored none).

    Returns (vectors in row order, how many rows were embedded now).
    """
    stored = {} if history is None else dict(zip(history.row_ids, history.embeddings))
    ids = rows["row_id"].astype(str).tolist()
    missing = [i for i, rid in enumerate(ids) if rid not in stored]
    fresh = embed_rows(rows.iloc[missing]) if missing else None
    dim = fresh.shape[1] if fresh is not None else (history.dim if history is not None else 0)
    out = np.zeros((len(ids), dim), dtype=np.float32)
    for i, rid in enumerate(ids):
        if rid in stored:
            out[i] = stored[rid]
    if fresh is not None:
        out[missing] = fresh
    return out, len(missing)
