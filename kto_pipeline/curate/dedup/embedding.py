"""Row embeddings for SemDeDup: one unit vector per row from an embedder of texts."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd


def embed_rows(rows: pd.DataFrame, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Unit vectors for SemDeDup, one per row, from an `embed(texts)` (e.g. `TextEmbedder.embed`).

    Each row's vector is [e(prompt), e(completion)] / sqrt(2): its cosine with another row's
    is the mean of the prompt cosine and the completion cosine. Embedding the concatenated
    text instead would let a long prompt fill the model's token window and hide the answers.
    Repeated prompts are cheap with an embedder that embeds identical texts once.
    """
    n = len(rows)
    texts = [str(t) for t in rows["prompt"].tolist()] + [str(t) for t in rows["completion"].tolist()]
    if n == 0:
        dim = getattr(getattr(embed, "__self__", None), "dim", None)  # TextEmbedder.embed
        if dim is None:
            dim = np.asarray(embed(["x"]), dtype=np.float32).shape[1]
        return np.zeros((0, 2 * int(dim)), dtype=np.float32)
    vectors = np.asarray(embed(texts), dtype=np.float32)
    out = np.hstack([vectors[:n], vectors[n:]]) / np.float32(math.sqrt(2.0))
    return unit_rows(out)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """The rows of `x` scaled to unit length (zero rows stay zero), as contiguous float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)
