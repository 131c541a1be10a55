"""Stages 1 and 2: contradictions (the same text with both labels) and exact duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kto_pipeline.curate.dedup.config import DedupReason
from kto_pipeline.curate.dedup.drops import StageDrops
from kto_pipeline.curate.dedup.history import DedupHistory


def contradictions(hashes: np.ndarray, labels: np.ndarray, record_ids: np.ndarray) -> StageDrops:
    """The first stage, over every row: where rows of one text from different records disagree
    on the label, the minority label's rows are dropped, or every row on a tie."""
    n = len(hashes)
    reason = np.full(n, None, dtype=object)
    frame = pd.DataFrame({"h": hashes, "label": labels, "rec": record_ids})
    stats = frame.groupby("h", sort=False).agg(n=("label", "size"), n_true=("label", "sum"), n_rec=("rec", "nunique"))
    mixed = stats[(stats["n_true"] > 0) & (stats["n_true"] < stats["n"]) & (stats["n_rec"] > 1)]
    groups = frame.groupby("h", sort=False).indices if not mixed.empty else {}
    for h, row in mixed.iterrows():
        members = np.asarray(groups[h])
        n_true, n_false = int(row["n_true"]), int(row["n"] - row["n_true"])
        if n_true == n_false:
            reason[members] = DedupReason.CONTRADICTION_TIE
        else:
            minority = n_true < n_false  # the minority label
            losers = members[labels[members] == minority]
            reason[losers] = DedupReason.CONTRADICTION_MINORITY
    return StageDrops.from_arrays(reason, np.full(n, None, dtype=object))


def exact_duplicates(
    hashes: np.ndarray,
    labels: np.ndarray,
    rank: np.ndarray,
    row_ids: np.ndarray,
    history: DedupHistory,
    alive: np.ndarray,
) -> StageDrops:
    """Among the `alive` rows: those whose (text hash, label) an earlier week kept, then all but
    the first (in canonical order, `rank`) of each group of equal (text hash, label)."""
    n = len(hashes)
    reason = np.full(n, None, dtype=object)
    dup_of = np.full(n, None, dtype=object)
    seen: dict[tuple[str, bool], str] = {}
    for h, lab, rid in zip(history.exact_hashes, history.labels, history.row_ids):
        seen.setdefault((h, bool(lab)), rid)
    idx = np.flatnonzero(alive)
    for i in idx[np.argsort(rank[idx], kind="stable")]:
        key = (hashes[i], bool(labels[i]))
        earlier = seen.get(key)
        if earlier is not None:
            reason[i] = DedupReason.EXACT_DUPLICATE_EARLIER_WEEK
            dup_of[i] = earlier

    first: dict[tuple[str, bool], str] = {}
    idx = np.flatnonzero(alive & (reason == None))  # noqa: E711 - element-wise
    for i in idx[np.argsort(rank[idx], kind="stable")]:
        key = (hashes[i], bool(labels[i]))
        kept = first.get(key)
        if kept is None:
            first[key] = row_ids[i]
        else:
            reason[i] = DedupReason.EXACT_DUPLICATE
            dup_of[i] = kept
    return StageDrops.from_arrays(reason, dup_of)
