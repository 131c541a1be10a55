"""DEITA's diversity-aware selection (the "repr filter"), as a plain library. It runs whether or
not a scorer ran: unscored rows are visited in row_id order with no score floor.

`select_diverse` is DEITA's "repr filter": rows in descending evol score, a row kept only if its
cosine to every already-kept row is ≤ threshold, up to a row budget. Here it runs per label
class (a thumbs-down row's low quality is its label, not a flaw), splits the budget across the
classes in proportion to their candidates, applies the score floor to desirable rows only, and
gives every dropped row a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.curate.deita.scorer import SCORE_COLUMNS


class SelectionReason:
    """Drop reasons. Stable strings: dashboards and tests key on them."""

    BELOW_SCORE_FLOOR = "below_score_floor"
    DIVERSITY = "diversity"
    OVER_BUDGET = "over_budget"
    ALL = (BELOW_SCORE_FLOOR, DIVERSITY, OVER_BUDGET)


@dataclass(frozen=True)
class SelectionConfig:
    """Parameters of `select_diverse`: the similarity threshold, the row budget and the score floor
    of DEITA's diversity-aware selection."""

    threshold: float = field(
        default=0.9,
        metadata={"help": "A row is kept only if its cosine to every kept row (of its class) is <= this (DEITA: 0.9)."},
    )
    budget: int | None = field(
        default=None,
        metadata={
            "help": "The most rows to keep in all; None: no cap. Split across the label classes in proportion to "
            "their candidates (rows left after the floor), largest remainder first."
        },
    )
    score_floor: float | None = field(
        default=None,
        metadata={
            "help": "Desirable rows whose evol_score (1..36) is below this are dropped first; None: no floor. "
            "Ignored when the rows are unscored."
        },
    )
    per_label: bool = field(
        default=True, metadata={"help": "Run the pass per label class (True) or over all rows at once (False)."}
    )
    block_size: int = field(
        default=1024, metadata={"help": "Candidates compared against the kept set per matrix product."}
    )

    def __post_init__(self):
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [-1, 1], got {self.threshold}")
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        if self.score_floor is not None and not math.isfinite(self.score_floor):
            raise ValueError(f"score_floor must be finite, got {self.score_floor}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


@dataclass
class SelectionResult:
    """kept: kept rows in input order, fresh RangeIndex, plus complexity, quality, evol_score.
    dropped: the other rows, input order, the same columns plus reason, detail, similar_to (the
        row_id of the kept row a "diversity" row was too similar to: the most similar one kept
        before it) and similarity (that cosine; NaN for other reasons).
    kept_index: positions of the kept rows in the input (to slice the embeddings).
    counts: rows_in, kept and one count per reason (zeros included).
    info: parameters used, the order, per-class quotas and counts.
    """

    kept: pd.DataFrame
    dropped: pd.DataFrame
    kept_index: np.ndarray
    counts: dict[str, int]
    info: dict = field(default_factory=dict)


_KEPT, _DIVERSITY, _OVER_BUDGET = 0, 1, 2
_SIM_CHUNK = 8192  # kept rows per product: bounds memory at block_size × 8192 floats


def greedy_diverse(
    x: np.ndarray, threshold: float, cap: int | None = None, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DEITA's greedy pass over unit rows `x`, already in priority order.

    Row i is kept iff max cosine to the rows kept before it is <= threshold, until `cap` rows
    are kept; later rows are over budget. Candidates are taken a block at a time: one product
    against the kept set so far, one Gram matrix inside the block, and a cheap in-block sweep
    that updates the later rows' best match whenever a row is kept. Work is O(n·k·d).

    Returns status (0 kept, 1 diversity, 2 over budget), match (index of the most similar
    earlier kept row, -1 if none) and its cosine (NaN unless status is 1).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    cap = m if cap is None else min(int(cap), m)
    status = np.full(m, _OVER_BUDGET, dtype=np.int8)
    match = np.full(m, -1, dtype=np.int64)
    sim_out = np.full(m, np.nan, dtype=np.float64)
    kept_vecs = np.empty((cap, d), dtype=np.float32)
    kept_pos = np.empty(cap, dtype=np.int64)
    k = 0
    s = 0
    while s < m and k < cap:
        e = min(s + block_size, m)
        xb = x[s:e]
        best = np.full(e - s, -np.inf, dtype=np.float32)
        arg = np.full(e - s, -1, dtype=np.int64)
        for t in range(0, k, _SIM_CHUNK):
            u = min(t + _SIM_CHUNK, k)
            sim = xb @ kept_vecs[t:u].T
            j = np.argmax(sim, axis=1)
            v = sim[np.arange(e - s), j]
            better = v > best
            best = np.where(better, v, best)
            arg = np.where(better, kept_pos[t + j], arg)
        gram = xb @ xb.T
        for i in range(e - s):
            if k == cap:
                break
            if best[i] > threshold:
                status[s + i] = _DIVERSITY
                match[s + i] = arg[i]
                sim_out[s + i] = float(best[i])
                continue
            status[s + i] = _KEPT
            kept_vecs[k] = xb[i]
            kept_pos[k] = s + i
            k += 1
            g = gram[i, i + 1 :]
            better = g > best[i + 1 :]
            best[i + 1 :] = np.where(better, g, best[i + 1 :])
            arg[i + 1 :] = np.where(better, s + i, arg[i + 1 :])
        s = e
    return status, match, sim_out


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights`; leftover units go to the largest fractional
    parts, ties to the earlier weight. Never gives a part more than its weight."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    total = min(total, whole)
    exact = [total * w / whole for w in weights]
    parts = [math.floor(q) for q in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _score_frame(rows: pd.DataFrame, scores: Any) -> pd.DataFrame:
    n = len(rows)
    if scores is None:
        source = rows if "evol_score" in rows.columns else None
    elif isinstance(scores, pd.DataFrame):
        if "evol_score" not in scores.columns:
            raise ValueError("a scores frame needs an evol_score column")
        source = scores
    else:
        source = pd.DataFrame({"evol_score": np.asarray(scores, dtype=np.float64).reshape(-1)})
    out = pd.DataFrame({c: np.full(n, np.nan) for c in SCORE_COLUMNS})
    if source is None:
        return out
    if len(source) != n:
        raise ValueError(f"scores have {len(source)} rows, rows have {n}")
    if source is not rows and "row_id" in source.columns and "row_id" in rows.columns:
        if not np.array_equal(source["row_id"].astype(str).to_numpy(), rows["row_id"].astype(str).to_numpy()):
            raise ValueError("scores are not aligned with rows (row_id differs)")
    for c in SCORE_COLUMNS:
        if c in source.columns:
            out[c] = pd.to_numeric(source[c], errors="raise").to_numpy(dtype=np.float64)
    return out


def select_diverse(
    rows: pd.DataFrame,
    scores: pd.DataFrame | Sequence[float] | np.ndarray | None,
    embeddings: np.ndarray,
    config: SelectionConfig | None = None,
) -> SelectionResult:
    """DEITA's diversity-aware selection, per label class (see `SelectionConfig`).

    rows: a frame with row_id (unique) and label (bool); every column is carried through.
    scores: a frame aligned with rows with evol_score (and complexity, quality), e.g.
        `DeitaScorer.score(rows).scores`; or an array of evol scores; or None, which takes
        rows["evol_score"] when present and otherwise means unscored. Unscored (all NaN) rows
        are visited in row_id order and no floor applies; scored rows by evol_score
        descending, ties by row_id. Partly missing scores are an error.
    embeddings: (len(rows), dim) L2-normalised float32 vectors aligned with rows.
    """
    config = config or SelectionConfig()
    for c in ("row_id", "label"):
        if c not in rows.columns:
            raise ValueError(f"rows lack column {c!r}")
    n = len(rows)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, dim), got {emb.shape}")
    if n and not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    row_ids = rows["row_id"].astype(str).to_numpy(dtype=object)
    if len(set(row_ids)) != n:
        raise ValueError("row_id must be unique")
    if rows["label"].isna().any():
        raise ValueError("label has missing values")
    labels = rows["label"].to_numpy(dtype=bool)

    score_cols = _score_frame(rows, scores)
    evol = score_cols["evol_score"].to_numpy(dtype=np.float64)
    nan = np.isnan(evol)
    scored = bool(n) and not nan.all()
    if scored and nan.any():
        raise ValueError(f"{int(nan.sum())} of {n} rows have no evol_score; score all rows or none")

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    similar_to = np.full(n, None, dtype=object)
    similarity = np.full(n, np.nan, dtype=np.float64)

    if scored and config.score_floor is not None:
        floor = config.score_floor
        for i in np.flatnonzero(labels & (evol < floor)):
            reason[i] = SelectionReason.BELOW_SCORE_FLOOR
            detail[i] = f"evol_score {evol[i]:.4g} < floor {floor:.4g} (desirable rows only)"

    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(row_ids.astype(str), kind="stable")] = np.arange(n)
    # Priority: evol score descending, then row_id, so the input order never matters.
    priority = np.lexsort((id_rank, -evol)) if scored else np.argsort(id_rank, kind="stable")

    candidate = reason == None  # noqa: E711 - element-wise
    if config.per_label:
        classes = [("desirable", labels), ("undesirable", ~labels)]
    else:
        classes = [("all", np.ones(n, dtype=bool))]
    sizes = [int((mask & candidate).sum()) for _, mask in classes]
    quotas = [None] * len(classes) if config.budget is None else largest_remainder(config.budget, sizes)

    class_info: dict[str, dict] = {}
    for (name, mask), quota in zip(classes, quotas):
        order = priority[(mask & candidate)[priority]]
        status, match, sim = greedy_diverse(emb[order], config.threshold, quota, config.block_size)
        for pos in np.flatnonzero(status == _DIVERSITY):
            i, j = order[pos], order[match[pos]]
            reason[i] = SelectionReason.DIVERSITY
            similar_to[i] = row_ids[j]
            similarity[i] = sim[pos]
            detail[i] = f"cosine {sim[pos]:.4f} > {config.threshold} with kept row {row_ids[j]}"
        for pos in np.flatnonzero(status == _OVER_BUDGET):
            reason[order[pos]] = SelectionReason.OVER_BUDGET
            detail[order[pos]] = f"{name} quota of {quota} rows reached"
        class_info[name] = {
            "rows": int(mask.sum()),
            "candidates": len(order),
            "quota": quota,
            "kept": int((status == _KEPT).sum()),
            "diversity": int((status == _DIVERSITY).sum()),
            "over_budget": int((status == _OVER_BUDGET).sum()),
        }

    kept_mask = reason == None  # noqa: E711
    unscored = rows.reset_index(drop=True).drop(columns=list(SCORE_COLUMNS), errors="ignore")
    full = pd.concat([unscored, score_cols], axis=1)
    kept = full.loc[kept_mask].reset_index(drop=True)
    dropped = full.loc[~kept_mask].reset_index(drop=True)
    dropped["reason"] = pd.Series(reason[~kept_mask], dtype="str")
    dropped["detail"] = pd.Series(detail[~kept_mask], dtype="str")
    dropped["similar_to"] = pd.Series(similar_to[~kept_mask], dtype="str")
    dropped["similarity"] = similarity[~kept_mask]

    counts = {"rows_in": n, "kept": int(kept_mask.sum())}
    for r in SelectionReason.ALL:
        counts[r] = int((reason == r).sum())
    assert counts["rows_in"] == counts["kept"] + sum(counts[r] for r in SelectionReason.ALL)
    info = {
        "threshold": config.threshold,
        "budget": config.budget,
        "score_floor": config.score_floor if scored else None,
        "per_label": config.per_label,
        "scored": scored,
        "order": "evol_score desc, row_id" if scored else "row_id",
        "embedding_dim": int(emb.shape[1]),
        "classes": class_info,
    }
    return SelectionResult(kept=kept, dropped=dropped, kept_index=np.flatnonzero(kept_mask), counts=counts, info=info)
