"""`deduplicate`: the driver that runs the four stages in order and applies their drops,
and `DedupResult`, what it returns. Every "first" is by the canonical order, (timestamp, row_id)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.curate.dedup.config import DedupConfig, DedupReason
from kto_pipeline.curate.dedup.exact import contradictions, exact_duplicates
from kto_pipeline.curate.dedup.history import DedupHistory
from kto_pipeline.curate.dedup.minhash import near_duplicates
from kto_pipeline.curate.dedup.semdedup import semantic_duplicates
from kto_pipeline.curate.dedup.sketch import MINHASH_SCHEME, SketchMismatchError, lsh_params, row_signatures
from kto_pipeline.curate.dedup.text import dedup_text, exact_hash
from kto_pipeline.curate.embeddings import same_weights


@dataclass
class DedupResult:
    """kept: the kept rows, input columns and dtypes, input order, fresh RangeIndex.
    dropped: the removed rows, input order, plus `reason` and `duplicate_of` (the row_id of the
        kept row or earlier week's row it duplicates; null for contradictions).
    kept_embeddings: the input embeddings of the kept rows, aligned with `kept`.
    week_history: the kept rows' hashes, sketches and vectors, and the config, for later weeks.
    counts: rows_in, kept, and one count per reason (all reasons, zeros included).
    info: parameters actually used (LSH bands, k, sketch), for run metadata.
    """

    kept: pd.DataFrame
    dropped: pd.DataFrame
    kept_embeddings: np.ndarray
    week_history: DedupHistory
    counts: dict[str, int]
    info: dict = field(default_factory=dict)


# (prompts, completions, num_perm, seed, shingle_size) → (prompt, completion) signatures.
RowSignatures = Callable[[list[str], list[str], int, int, int], tuple[np.ndarray, np.ndarray]]

_REQUIRED = ("row_id", "record_id", "timestamp", "prompt", "completion", "label")


def deduplicate(
    rows: pd.DataFrame,
    embeddings: np.ndarray | Callable[[pd.DataFrame], np.ndarray],
    history: DedupHistory | None = None,
    config: DedupConfig | None = None,
    signatures: RowSignatures | None = None,
) -> DedupResult:
    """Remove contradictions, exact, near and semantic duplicates (see the package docstring,
    `kto_pipeline.curate.dedup`, for the rules), within the week and against `history`.

    rows: a frame with at least row_id (unique), record_id, timestamp, prompt, completion,
        label (bool); every column is carried through.
    embeddings: (len(rows), dim) L2-normalised vectors aligned with `rows` (see `embed_rows`),
        or a function of a frame of rows returning them. A function is called once, only on
        the rows the cheaper stages left, so no duplicate they caught is ever embedded.
    signatures: what computes the MinHash signatures (default `row_signatures`, here); a
        cluster backend passes its own, which must return what `row_signatures` returns.
    """
    config = config or DedupConfig()
    missing = [c for c in _REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}")
    n = len(rows)
    emb = None if callable(embeddings) else _checked_embeddings(embeddings, n)
    row_ids = np.array([str(r) for r in rows["row_id"].tolist()], dtype=object)
    if len(set(row_ids)) != n:
        raise ValueError("row_id must be unique")
    if rows["label"].isna().any():
        raise ValueError("label has missing values")
    labels = rows["label"].to_numpy(dtype=bool)

    prompts = [str(p) for p in rows["prompt"].tolist()]
    completions = [str(c) for c in rows["completion"].tolist()]
    texts = [dedup_text(p, c) for p, c in zip(prompts, completions)]
    hashes = np.array([exact_hash(t) for t in texts], dtype=object)

    # Canonical order: (timestamp, row_id). rank[i] = position of row i in that order.
    order = _canonical_order(rows["timestamp"], row_ids)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    reason = np.full(n, None, dtype=object)
    dup_of = np.full(n, None, dtype=object)
    # With lazy embeddings their width is known, and checked against the history, only later.
    history = _check_history(history, config, None if emb is None else emb.shape[1])
    info: dict = {"sketch": config.sketch, "history_rows": len(history or ())}

    # (stage, start, end) on time.perf_counter(): for run metadata and the benchmarks.
    stages: list[tuple[str, float, float]] = []
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages.append((name, mark, now))
        mark = now

    def alive_mask() -> np.ndarray:
        return reason == None  # noqa: E711 - element-wise

    contradictions(hashes, labels, rows["record_id"].to_numpy(dtype=object)).apply(reason, dup_of)
    exact_duplicates(hashes, labels, rank, row_ids, history, alive_mask()).apply(reason, dup_of)
    lap("exact")

    alive = np.flatnonzero(alive_mask())
    sig_p = np.zeros((n, config.num_perm), dtype=np.uint32)
    sig_c = np.zeros((n, config.num_perm), dtype=np.uint32)
    if len(alive):
        sp, sc = (signatures or row_signatures)(
            [prompts[i] for i in alive],
            [completions[i] for i in alive],
            config.num_perm,
            config.minhash_seed,
            config.shingle_size,
        )
        sig_p[alive], sig_c[alive] = sp, sc
    info["lsh_bands"], info["lsh_rows_per_band"] = lsh_params(
        config.minhash_threshold, config.num_perm, config.lsh_weights
    )
    near_duplicates(sig_p, sig_c, labels, rank, row_ids, history, config, alive_mask()).apply(reason, dup_of)
    lap("minhash")

    if emb is None:
        alive = np.flatnonzero(alive_mask())
        emb_alive = _checked_embeddings(embeddings(rows.iloc[alive]), len(alive))
        emb = np.zeros((n, emb_alive.shape[1]), dtype=np.float32)
        emb[alive] = emb_alive
        if len(history) and history.dim != emb.shape[1]:
            raise ValueError(f"history embeddings have width {history.dim}, this week's have {emb.shape[1]}")
        lap("embedding")
    info["embedding_dim"] = emb.shape[1]
    info["rows_embedded"] = int(alive_mask().sum())
    semantic = semantic_duplicates(emb, labels, rank, row_ids, history, config, alive_mask())
    semantic.apply(reason, dup_of)
    info.update(semantic.info)
    lap("semdedup")
    info["stages"] = stages

    kept_mask = alive_mask()
    kept = rows.loc[kept_mask].reset_index(drop=True)
    dropped = rows.loc[~kept_mask].reset_index(drop=True)
    dropped["reason"] = pd.Series(reason[~kept_mask], dtype="str")
    dropped["duplicate_of"] = pd.Series(dup_of[~kept_mask], dtype="str")

    kept_idx = np.flatnonzero(kept_mask)
    weeks = rows["week"].to_numpy(dtype=object)[kept_idx] if "week" in rows.columns else None
    week_history = DedupHistory(
        row_ids=row_ids[kept_idx],
        labels=labels[kept_idx],
        exact_hashes=hashes[kept_idx],
        minhash_prompt=sig_p[kept_idx],
        minhash_completion=sig_c[kept_idx],
        embeddings=emb[kept_idx],
        weeks=None if weeks is None else np.array([None if is_missing(w) else str(w) for w in weeks], dtype=object),
        sketch=config.sketch,
        embedding_model=config.embedding_model,
        config=config,
    )
    counts = {"rows_in": n, "kept": int(kept_mask.sum())}
    for r in DedupReason.ALL:
        counts[r] = int((reason == r).sum())
    assert counts["rows_in"] == counts["kept"] + sum(counts[r] for r in DedupReason.ALL)
    return DedupResult(
        kept=kept,
        dropped=dropped,
        kept_embeddings=np.ascontiguousarray(emb[kept_idx]),
        week_history=week_history,
        counts=counts,
        info=info,
    )


def _checked_embeddings(embeddings: np.ndarray, n: int) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, dim), got {emb.shape}")
    if n and not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return emb


def _check_history(history: DedupHistory | None, config: DedupConfig, dim: int | None) -> DedupHistory:
    if history is None or len(history) == 0:
        return DedupHistory.empty(config.num_perm, dim or 0)
    if history.scheme != MINHASH_SCHEME:
        raise SketchMismatchError(f"history sketches use scheme {history.scheme!r}, not {MINHASH_SCHEME!r}")
    if history.sketch != config.sketch:
        raise SketchMismatchError(
            f"history sketches were made as {history.sketch!r}, this run makes {config.sketch!r}: "
            "with another num_perm, seed or shingling they cannot be compared"
        )
    if dim is not None and history.dim != dim:
        raise ValueError(f"history embeddings have width {history.dim}, this week's have {dim}")
    # A new runtime of the same weights (torch → int8 ONNX, the CPU default) keeps the history usable.
    if (
        config.embedding_model
        and history.embedding_model
        and not same_weights(config.embedding_model, history.embedding_model)
    ):
        raise ValueError(
            f"history embeddings come from {history.embedding_model!r}, this run uses {config.embedding_model!r}: "
            "embed with the history's model, or start a new history (dedup_history.base_path)"
        )
    return history


def _canonical_order(timestamps: pd.Series, row_ids: np.ndarray) -> np.ndarray:
    ts = pd.to_datetime(pd.Series(timestamps).reset_index(drop=True), utc=True)
    nat = ts.isna().to_numpy()
    ts_key = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    ts_key = np.where(nat, np.iinfo(np.int64).max, ts_key)  # missing timestamps sort last
    # row_id as the tie-break: rank the ids lexicographically, then lexsort two integer keys.
    id_rank = np.empty(len(row_ids), dtype=np.int64)
    id_rank[np.argsort(row_ids.astype(str), kind="stable")] = np.arange(len(row_ids))
    return np.lexsort((id_rank, ts_key))
