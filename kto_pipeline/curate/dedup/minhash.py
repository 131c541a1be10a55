"""Stage 3: near duplicates, through one datasketch MinHashLSH per label, filled in bulk."""

from __future__ import annotations

import gc

import numpy as np
from datasketch import MinHashLSH
from datasketch.storage import DictListStorage, DictSetStorage

from kto_pipeline.curate.dedup.config import DedupConfig, DedupReason
from kto_pipeline.curate.dedup.drops import StageDrops
from kto_pipeline.curate.dedup.history import DedupHistory
from kto_pipeline.curate.dedup.sketch import estimated_jaccard, lsh_params


def near_duplicates(
    sig_p: np.ndarray,
    sig_c: np.ndarray,
    labels: np.ndarray,
    rank: np.ndarray,
    row_ids: np.ndarray,
    history: DedupHistory,
    config: DedupConfig,
    alive: np.ndarray,
) -> StageDrops:
    """Near duplicates among the `alive` rows, from their (n, num_perm) prompt and completion
    signatures (rows not alive are not read).

    One MinHashLSH per label holding the earlier weeks' rows and this week's; the LSH
    buckets that hold more than one key give the candidate pairs, which are then verified."""
    # The index is a set per LSH bucket: about 14 new sets a row, none of them in a cycle.
    # Python's cycle collector would rescan the growing heap over and over while they are
    # made (half of the stage's time at 50k rows), so it waits until the stage is done.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _near_duplicates(sig_p, sig_c, labels, rank, row_ids, history, config, alive)
    finally:
        if enabled:
            gc.enable()


def _near_duplicates(
    sig_p: np.ndarray,
    sig_c: np.ndarray,
    labels: np.ndarray,
    rank: np.ndarray,
    row_ids: np.ndarray,
    history: DedupHistory,
    config: DedupConfig,
    alive: np.ndarray,
) -> StageDrops:
    threshold = config.minhash_threshold
    params = lsh_params(threshold, config.num_perm, config.lsh_weights)
    n = len(alive)
    reason = np.full(n, None, dtype=object)
    dup_of = np.full(n, None, dtype=object)
    idx = np.flatnonzero(alive)
    if not len(idx):
        return StageDrops.from_arrays(reason, dup_of)
    idx = idx[np.argsort(rank[idx], kind="stable")]
    sig = np.minimum(sig_p, sig_c)
    h_p, h_c = history.minhash_prompt, history.minhash_completion
    h_sig = history.minhashes if len(history) else None

    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for label in (False, True):
        cur = idx[labels[idx] == label]
        h_idx = np.flatnonzero(history.labels == label) if len(history) else np.zeros(0, dtype=np.int64)
        if not len(cur) or len(cur) + len(h_idx) < 2:
            continue
        # Keys: this week's row i → i; earlier weeks' row j → n + j.
        lsh = MinHashLSH(num_perm=config.num_perm, params=params)
        if len(h_idx):
            _insert_many(lsh, [n + int(j) for j in h_idx], h_sig[h_idx])
        _insert_many(lsh, [int(i) for i in cur], sig[cur])
        hist_cands: dict[int, set[int]] = {}
        week_cands: dict[int, set[int]] = {}  # i → candidates j earlier than i
        for bucket in _shared_buckets(lsh):
            now = [k for k in bucket if k < n]
            if not now:
                continue
            before = [k - n for k in bucket if k >= n]
            for i in now:
                if before:
                    hist_cands.setdefault(i, set()).update(before)
                if len(now) > 1:
                    earlier = [j for j in now if rank[j] < rank[i]]
                    if earlier:
                        week_cands.setdefault(i, set()).update(earlier)

        # Against earlier weeks: the best verified match (first in history order on a tie).
        for i in sorted(hist_cands):
            cands = np.array(sorted(hist_cands[i]), dtype=np.int64)
            jp = estimated_jaccard(sig_p[i], h_p[cands])
            jc = estimated_jaccard(sig_c[i], h_c[cands])
            ok = (jp >= threshold) & (jc >= threshold)
            if ok.any():
                best = cands[int(np.argmax(np.where(ok, np.minimum(jp, jc), -1.0)))]
                reason[i] = DedupReason.NEAR_DUPLICATE_EARLIER_WEEK
                dup_of[i] = history.row_ids[best]

        # Within the week: verified pairs join groups; a group's root is its earliest row
        # (whatever order the pairs come in, so only rows with candidates are visited).
        for i in sorted(week_cands):
            if reason[i] is not None:
                continue
            cands = [j for j in week_cands[i] if reason[j] is None]
            if not cands:
                continue
            cands = np.array(sorted(cands), dtype=np.int64)
            jp = estimated_jaccard(sig_p[i], sig_p[cands])
            jc = estimated_jaccard(sig_c[i], sig_c[cands])
            for j in cands[(jp >= threshold) & (jc >= threshold)]:
                ri, rj = find(int(i)), find(int(j))
                if ri != rj:
                    if rank[ri] < rank[rj]:
                        parent[rj] = ri
                    else:
                        parent[ri] = rj
    for i in idx:
        if reason[i] is None:
            root = find(int(i))
            if root != i:
                reason[i] = DedupReason.NEAR_DUPLICATE
                dup_of[i] = row_ids[root]
    return StageDrops.from_arrays(reason, dup_of)


def _insert_many(lsh: MinHashLSH, keys: list, signatures: np.ndarray) -> None:
    """`lsh.insert(key, MinHash)` for many rows at once: the same band keys (each band's
    byte-swapped bytes, as MinHashLSH._byteswap makes them) into the same storages, but
    computed for all rows in one numpy pass instead of one MinHash object per row.

    With datasketch's in-memory storages (the default: a dict of sets per band, a dict of
    lists for the keys) the entries go straight into their dicts: the same contents as
    `Storage.insert`, without a call per row and band (that call was 1.5 s of 2 s at 50k rows).
    """
    if lsh.hashfunc is not None or lsh.prepickle:
        raise ValueError("bulk insertion supports MinHashLSH's default band keys only")
    sigs = np.ascontiguousarray(signatures, dtype=np.uint32)
    if sigs.shape[1] != lsh.h:
        raise ValueError(f"expected signatures of {lsh.h} permutations, got {sigs.shape[1]}")
    bands = []
    for start, end in lsh.hashranges:
        band = np.ascontiguousarray(sigs[:, start:end].byteswap())
        bands.append(band.view(np.dtype((np.void, band.shape[1] * 4))).ravel().tolist())
    if type(lsh.keys) is DictListStorage:
        key_lists = lsh.keys._dict
        for key, *band_keys in zip(keys, *bands, strict=True):
            key_lists[key].extend(band_keys)
    else:
        for key, *band_keys in zip(keys, *bands, strict=True):
            lsh.keys.insert(key, *band_keys)
    for table, band_keys in zip(lsh.hashtables, bands, strict=True):
        if type(table) is DictSetStorage:
            buckets = table._dict
            for key, band_key in zip(keys, band_keys, strict=True):
                buckets[band_key].add(key)
        else:
            for key, band_key in zip(keys, band_keys, strict=True):
                table.insert(band_key, key)


def _shared_buckets(lsh: MinHashLSH):
    """The keys of every LSH bucket that holds more than one key, band by band."""
    for table in lsh.hashtables:
        if type(table) is DictSetStorage:  # the default storage: read its dict, no counts dict
            yield from (keys for keys in table._dict.values() if len(keys) > 1)
            continue
        for band_hash, count in table.itemcounts().items():
            if count > 1:
                yield table.get(band_hash)
