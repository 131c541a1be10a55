"""Stage 4: semantic duplicates, SemDeDup (Abbas et al. 2023): spherical k-means, then the
maximum cosine with the earlier rows of the same cluster and label."""

from __future__ import annotations

import math
import warnings

import numpy as np

from kto_pipeline.curate.dedup.config import DedupConfig, DedupReason
from kto_pipeline.curate.dedup.drops import StageDrops
from kto_pipeline.curate.dedup.embedding import unit_rows
from kto_pipeline.curate.dedup.history import DedupHistory


def semantic_duplicates(
    emb: np.ndarray,
    labels: np.ndarray,
    rank: np.ndarray,
    row_ids: np.ndarray,
    history: DedupHistory,
    config: DedupConfig,
    alive: np.ndarray,
) -> StageDrops:
    """SemDeDup among the `alive` rows, on their (n, dim) embeddings (rows not alive are not
    read). Its info gives k, the k-means used and the keep order."""
    reason = np.full(len(alive), None, dtype=object)
    dup_of = np.full(len(alive), None, dtype=object)
    idx = np.flatnonzero(alive)
    n = len(idx)
    if n == 0:
        return StageDrops.from_arrays(reason, dup_of, {"semdedup_clusters": 0})
    idx = idx[np.argsort(rank[idx], kind="stable")]  # canonical order: k-means sees a stable input
    x = unit_rows(emb[idx])
    k = config.semdedup_clusters if config.semdedup_clusters is not None else max(1, round(math.sqrt(n)))
    k = max(1, min(int(k), n))
    centroids, method = _spherical_kmeans(x, k, config)
    assign = _assign(x, centroids, config.pairwise_batch_size)
    threshold = np.float32(1.0 - config.semdedup_eps)
    block = config.pairwise_batch_size

    h_assign = None
    if len(history):
        h_x = unit_rows(history.embeddings)
        h_assign = _assign(h_x, centroids, block)

    rng = np.random.default_rng(config.seed)
    random_keys = rng.random(n) if config.keep == "random" else None
    for c in range(k):
        members = np.flatnonzero(assign == c)  # positions in `idx`, canonical order
        if not len(members):
            continue
        xm = x[members]
        dist = 1.0 - xm @ centroids[c]
        if config.keep == "hard":
            order = np.lexsort((members, -dist))
        elif config.keep == "easy":
            order = np.lexsort((members, dist))
        else:
            order = np.lexsort((members, random_keys[members]))
        members = members[order]
        for label in (False, True):
            grp = members[labels[idx[members]] == label]
            if not len(grp):
                continue
            # Against earlier weeks' rows of the same label in this cluster.
            if h_assign is not None:
                h_idx = np.flatnonzero((h_assign == c) & (history.labels == label))
                if len(h_idx):
                    best_sim, best_j = _max_sim(x[grp], h_x[h_idx], block)
                    hit = best_sim >= threshold
                    for g, j in zip(grp[hit], best_j[hit]):
                        reason[idx[g]] = DedupReason.SEMANTIC_DUPLICATE_EARLIER_WEEK
                        dup_of[idx[g]] = history.row_ids[h_idx[j]]
                    grp = grp[~hit]
            if len(grp) < 2:
                continue
            best_sim, best_i = _max_sim_earlier(x[grp], block)
            rep = np.arange(len(grp))  # rep[j]: the kept row j stands for (itself if kept)
            for j in range(1, len(grp)):
                if best_sim[j] >= threshold:
                    i = best_i[j]
                    rep[j] = rep[i]
                    reason[idx[grp[j]]] = DedupReason.SEMANTIC_DUPLICATE
                    dup_of[idx[grp[j]]] = row_ids[idx[grp[rep[j]]]]
    info = {"semdedup_clusters": k, "semdedup_kmeans": method, "semdedup_keep": config.keep}
    return StageDrops.from_arrays(reason, dup_of, info)


def _spherical_kmeans(x: np.ndarray, k: int, config: DedupConfig) -> tuple[np.ndarray, str]:
    """k-means on unit vectors, centroids re-normalised: cosine k-means, as SemDeDup's faiss
    `Kmeans_with_cos_dist`. k == 1 needs no fitting."""
    if k == 1:
        return unit_rows(x.mean(axis=0, keepdims=True)), "mean"
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    common = {
        "n_clusters": k,
        "n_init": 1,
        "random_state": config.seed,
        "max_iter": config.kmeans_max_iter,
        "init": config.kmeans_init,
    }
    if len(x) > config.minibatch_kmeans_above:
        model, method = MiniBatchKMeans(batch_size=4096, **common), "MiniBatchKMeans"
    else:
        model, method = KMeans(**common), "KMeans"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        model.fit(x)
    return unit_rows(model.cluster_centers_), method


def _assign(x: np.ndarray, centroids: np.ndarray, block: int) -> np.ndarray:
    """Nearest centroid by cosine (ties → the lowest cluster id)."""
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), block):
        out[s : s + block] = np.argmax(x[s : s + block] @ centroids.T, axis=1)
    return out


def _max_sim(a: np.ndarray, b: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a: max cosine against b and its first argmax, in blocks."""
    best = np.full(len(a), -np.inf, dtype=np.float32)
    arg = np.zeros(len(a), dtype=np.int64)
    for s in range(0, len(a), block):
        for t in range(0, len(b), block):
            sim = a[s : s + block] @ b[t : t + block].T
            j = np.argmax(sim, axis=1)
            v = sim[np.arange(len(j)), j]
            better = v > best[s : s + block]
            best[s : s + block] = np.where(better, v, best[s : s + block])
            arg[s : s + block] = np.where(better, j + t, arg[s : s + block])
    return best, arg


def _max_sim_earlier(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """For each j: max over i < j of cos(x_i, x_j) and its first argmax (SemDeDup's column max
    of triu(XXᵀ, 1)), computed block by block so memory stays O(block²)."""
    m = len(x)
    best = np.full(m, -np.inf, dtype=np.float32)
    arg = np.full(m, -1, dtype=np.int64)
    for s in range(0, m, block):
        e = min(s + block, m)
        for t in range(0, e, block):
            u = min(t + block, e)
            sim = x[s:e] @ x[t:u].T  # rows: j in [s, e), columns: i in [t, u)
            if t + block > s:  # the diagonal block: only i < j counts
                jj = np.arange(s, e)[:, None]
                ii = np.arange(t, u)[None, :]
                sim = np.where(ii < jj, sim, -np.inf)
            j = np.argmax(sim, axis=1)
            v = sim[np.arange(e - s), j]
            better = v > best[s:e]
            best[s:e] = np.where(better, v, best[s:e])
            arg[s:e] = np.where(better, j + t, arg[s:e])
    return best, arg
