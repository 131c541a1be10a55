"""Deduplication of a week's training rows: contradictions, exact, near and semantic duplicates.

`deduplicate` runs four stages, in this order, each against the current week and against
what earlier weeks kept (a `DedupHistory`). Every dropped row gets a reason; the counts add up
(rows_in == kept + the sum of the drops). Only rows with the *same label* are ever duplicates
of each other: a desirable and an undesirable row are different KTO examples, and the two
rows of one edit (the user's edit, desirable; the original, undesirable) are never removed
as duplicates of each other.

Rows are compared on `dedup_text(prompt, completion)`: the normalised prompt, a newline, and
the normalised completion (normalise = NFKC, casefold, collapse whitespace, strip).

Keep rules (every "first" is by (timestamp, row_id), so the result does not depend on the
order of the input rows):

1. Contradictions. Rows with the same dedup_text from different records but both labels
   disagree. The majority label wins: its rows stay (for the next stages) and the minority
   rows are dropped as "contradiction_minority". On a tie every row of that text is dropped
   as "contradiction_tie". Rows that all come from one record (an edit whose edited and
   original texts normalise to the same text) are not a contradiction.
2. Exact duplicates: same dedup_text and same label. A row whose (text hash, label) an
   earlier week kept is dropped as "exact_duplicate_earlier_week"; of the rest, the first of
   each group is kept and the others are dropped as "exact_duplicate".
3. Near duplicates: datasketch MinHash signatures (scheme "affine32", xxh32) over word
   5-shingles of the prompt and of the completion (hashed apart, so a row's set is their
   disjoint union) and one `MinHashLSH(threshold, num_perm)` index per label over the row
   signatures. An LSH candidate pair counts when the MinHash-estimated Jaccard of the prompts
   AND of the completions are both >= threshold, so one long shared prompt does not make
   different answers ("yes" / "no") look alike. Rows matching an earlier week's row are
   dropped as "near_duplicate_earlier_week"; the rest are grouped into connected components
   of matching pairs, the first row of each group is kept and the others are dropped as
   "near_duplicate" with duplicate_of = that first row (a chain A~B~C keeps A only).
4. Semantic duplicates: SemDeDup (Abbas et al. 2023) on the given embeddings. Spherical
   k-means into k clusters; inside each cluster rows are ordered by cosine distance to the
   centroid, keep="hard" putting the farthest first (facebookresearch/SemDeDup's default;
   "easy": closest first; "random": seeded shuffle). A row j is dropped as
   "semantic_duplicate" when max over earlier rows i of the same label and cluster of
   cos(i, j) >= 1 - eps, whether or not i was itself dropped (SemDeDup's rule, not
   transitive); duplicate_of follows the chain of best matches back to the kept row. Before
   that, each row is compared with the earlier weeks' rows of its label that fall in the same
   cluster (history vectors are assigned to this week's centroids) and dropped as
   "semantic_duplicate_earlier_week" at the same threshold.

In every stage, the comparison against earlier weeks comes first: the earlier week's row wins.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate

import datasketch
import numpy as np
import pandas as pd
import xxhash
from datasketch import MinHash, MinHashLSH

from kto_pipeline.core.missing import is_missing

# ---------------------------------------------------------------------------------------
# Reasons and the sketch scheme
# ---------------------------------------------------------------------------------------


class DedupReason:
    """Drop reasons. Stable strings: dashboards and tests key on them."""

    CONTRADICTION_MINORITY = "contradiction_minority"
    CONTRADICTION_TIE = "contradiction_tie"
    EXACT_DUPLICATE = "exact_duplicate"
    EXACT_DUPLICATE_EARLIER_WEEK = "exact_duplicate_earlier_week"
    NEAR_DUPLICATE = "near_duplicate"
    NEAR_DUPLICATE_EARLIER_WEEK = "near_duplicate_earlier_week"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    SEMANTIC_DUPLICATE_EARLIER_WEEK = "semantic_duplicate_earlier_week"

    ALL = (
        CONTRADICTION_MINORITY,
        CONTRADICTION_TIE,
        EXACT_DUPLICATE,
        EXACT_DUPLICATE_EARLIER_WEEK,
        NEAR_DUPLICATE,
        NEAR_DUPLICATE_EARLIER_WEEK,
        SEMANTIC_DUPLICATE,
        SEMANTIC_DUPLICATE_EARLIER_WEEK,
    )


DATASKETCH_VERSION: str = datasketch.__version__
# The MinHash permutation scheme our signatures follow: datasketch 2.0's default. A part's
# signature equals `MinHash(num_perm, seed=minhash_seed, scheme="affine32",
# hashfunc=lambda b: xxhash.xxh32_intdigest(b, part_seed))` updated with the UTF-8 shingles
# (a test checks this); it is computed with numpy because that is 5-10x faster.
MINHASH_SCHEME = "affine32"
MINHASH_HASHFUNC = "xxh32"
TEXT_NORMALISATION = "nfkc-casefold-ws"
EXACT_HASH = "blake2b-128"

# xxh32 seeds that keep prompt and completion shingles apart: the row's shingle set is the
# disjoint union of (prompt, shingle) and (completion, shingle) elements.
PROMPT_HASH_SEED = 1
COMPLETION_HASH_SEED = 2


class _Separators(dict):
    """str.translate table: Unicode punctuation (P*) and symbols (S*) → space, lazily filled."""

    def __missing__(self, codepoint: int) -> int:
        value = 32 if unicodedata.category(chr(codepoint))[0] in "PS" else codepoint
        self[codepoint] = value
        return value


_SEPARATORS = _Separators()


class SketchMismatchError(ValueError):
    """Stored sketches were made in a way that cannot be compared with the current ones."""


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace, strip."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedup_text(prompt: str, completion: str) -> str:
    """The text a row is compared on: normalised prompt + "\\n" + normalised completion."""
    return normalise_text(prompt) + "\n" + normalise_text(completion)


def exact_hash(text: str) -> str:
    """A stable 128-bit hex digest of a dedup text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def words(text: str) -> list[str]:
    """The words of a normalised text: punctuation and symbols count as spaces."""
    return text.translate(_SEPARATORS).split()


def shingles(text: str, shingle_size: int) -> list[str]:
    """Word shingles of a text (normalised first; punctuation and symbols are separators).

    A text of at most `shingle_size` words has one shingle, its whole word sequence, and a
    text without any word has one shingle, the normalised text itself. So no text has an
    empty set, and two different short texts never share a signature ("yes" vs "no").
    """
    text = normalise_text(text)
    ws = words(text)
    if not ws:
        return [text]
    if len(ws) <= shingle_size:
        return [" ".join(ws)]
    return [" ".join(ws[i : i + shingle_size]) for i in range(len(ws) - shingle_size + 1)]


# ---------------------------------------------------------------------------------------
# MinHash signatures (vectorised, bit-identical to datasketch's affine32 MinHash)
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    m = MinHash(num_perm=num_perm, seed=seed, scheme=MINHASH_SCHEME)
    a, b = (np.asarray(p, dtype=np.uint32) for p in m.permutations)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _permutation_fingerprint(num_perm: int, seed: int) -> str:
    a, b = _permutations(num_perm, seed)
    return hashlib.blake2b(a.tobytes() + b.tobytes(), digest_size=8).hexdigest()


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the affine32 maps."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(texts: Iterable[str], shingle_size: int, hash_seed: int = 0) -> tuple[list[int], list[int]]:
    """xxh32 (with `hash_seed`) of the UTF-8 bytes of each text's `shingles`, flattened.

    Returns (hashes of all texts back to back, number of hashes per text). This is the hot
    loop: it works on the encoded text and joins byte words, which gives the same bytes as
    encoding each shingle of `shingles(text)`.
    """
    h = xxhash.xxh32_intdigest
    k = shingle_size
    flat: list[int] = []
    lengths: list[int] = []
    for text in texts:
        text = normalise_text(text)
        ws = text.translate(_SEPARATORS).encode("utf-8", "surrogatepass").split()
        n = len(ws)
        if n <= k:
            flat.append(h(b" ".join(ws) if ws else text.encode("utf-8", "surrogatepass"), hash_seed))
            lengths.append(1)
        else:
            # Each shingle is a slice of the words joined once: the same bytes as joining
            # its k words, without building them k times over.
            joined = b" ".join(ws)
            starts = list(accumulate((len(w) + 1 for w in ws), initial=0))
            flat.extend([h(joined[starts[i] : starts[i + k] - 1], hash_seed) for i in range(n - k + 1)])
            lengths.append(n - k + 1)
    return flat, lengths


def signatures_from_hashes(
    flat: Sequence[int], lengths: Sequence[int], num_perm: int, seed: int, chunk: int = 512
) -> np.ndarray:
    """Shingle hashes (flattened, with per-text counts) → (n, num_perm) uint32 MinHash
    signatures in datasketch's affine32 scheme: fmix32, then h·a + b mod 2^32, then the minimum.

    Every text needs at least one hash. Vectorised: one (num_perm × shingles) broadcast per
    chunk of texts and a `minimum.reduceat` along the shingle axis. 512 texts per chunk keep
    the broadcast (≈15 MB) in cache: 2.3× faster than 2048 on the benchmark corpus.
    """
    n = len(lengths)
    if n == 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths <= 0).any():
        raise ValueError("every text needs at least one shingle")
    ends = np.concatenate([[0], np.cumsum(lengths)])
    values = _fmix32(np.asarray(flat, dtype=np.uint32))
    a, b = _permutations(num_perm, seed)
    out = np.empty((num_perm, n), dtype=np.uint32)

    def fill(s: int) -> None:
        e = min(s + chunk, n)
        lo, hi = ends[s], ends[e]
        phv = a[:, None] * values[None, lo:hi]  # uint32 arithmetic wraps: the mod 2^32 of affine32
        phv += b[:, None]
        out[:, s:e] = np.minimum.reduceat(phv, ends[s:e] - lo, axis=1)

    # numpy releases the GIL in these loops: chunks run on every core, each into its own columns.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(0, n, chunk)))
    return np.ascontiguousarray(out.T)


def minhash_signatures(
    texts: Sequence[str], num_perm: int = 128, seed: int = 1, shingle_size: int = 5, hash_seed: int = 0
) -> np.ndarray:
    """Texts → (n, num_perm) uint32 MinHash signatures of their word shingles.

    Equal to `MinHash(num_perm, seed=seed, hashfunc=lambda b: xxh32_intdigest(b, hash_seed))`
    (scheme "affine32") updated with `[s.encode() for s in shingles(text, shingle_size)]`.
    """
    flat, lengths = shingle_hashes(texts, shingle_size, hash_seed)
    return signatures_from_hashes(flat, lengths, num_perm, seed)


def row_signatures(
    prompts: Sequence[str], completions: Sequence[str], num_perm: int = 128, seed: int = 1, shingle_size: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """(prompt signatures, completion signatures) of prompt/completion texts.

    The parts are hashed with different xxh32 seeds, so their shingles never coincide; the
    signature of the whole row (the union of both sets) is `np.minimum(prompt, completion)`.
    """
    p = minhash_signatures(prompts, num_perm, seed, shingle_size, PROMPT_HASH_SEED)
    c = minhash_signatures(completions, num_perm, seed, shingle_size, COMPLETION_HASH_SEED)
    return p, c


def estimated_jaccard(sig: np.ndarray, others: np.ndarray) -> np.ndarray:
    """MinHash Jaccard estimates of one signature against each row of `others`."""
    return (others == sig[None, :]).mean(axis=1)


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows per band) datasketch's MinHashLSH picks for this threshold and
    (false positive, false negative) weights."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=tuple(weights))
    return lsh.b, lsh.r


# ---------------------------------------------------------------------------------------
# Row embeddings
# ---------------------------------------------------------------------------------------


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
    return _unit(out)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupConfig:
    """Parameters of `deduplicate`.

    minhash_threshold: Jaccard threshold of MinHashLSH and of the per-part check.
    lsh_weights: MinHashLSH's (false positive, false negative) weights for choosing its bands.
        Every LSH candidate is verified against the threshold, so a false positive costs only
        a comparison: (0.1, 0.9) gives 14 bands × 9 rows at num_perm=128 (like datatrove's
        14 × 8), which finds 87% of pairs at Jaccard 0.80, 97.5% at 0.85 and 99.5% at 0.88;
        MinHashLSH's default (0.5, 0.5) gives 9 × 13: 40%, 69% and 85%.
    num_perm, shingle_size (words), minhash_seed: the sketch; changing them makes earlier
        weeks' stored sketches incomparable (`SketchMismatchError`).
    semdedup_eps: semantic duplicate when cosine >= 1 - eps.
    semdedup_clusters: k of the spherical k-means; None → round(sqrt(n)), at least 1.
    seed: k-means and keep="random" seed.
    keep: SemDeDup's order inside a cluster: "hard" (farthest from the centroid first,
        kept), "easy" (closest first) or "random".
    kmeans_max_iter: k-means iterations (SemDeDup's configs use 100).
    kmeans_init: "random" (k rows drawn with `seed`, as faiss, which SemDeDup uses) or
        "k-means++" (much slower with sklearn on float32 vectors).
    minibatch_kmeans_above: use MiniBatchKMeans when more rows than this.
    pairwise_batch_size: block size of the pairwise cosine work (memory ∝ its square).
    embedding_model: the embedder's name; recorded in the history and checked against it.
    """

    minhash_threshold: float = 0.8
    lsh_weights: tuple[float, float] = (0.1, 0.9)
    num_perm: int = 128
    shingle_size: int = 5
    semdedup_eps: float = 0.05
    semdedup_clusters: int | None = None
    seed: int = 0
    keep: str = "hard"
    minhash_seed: int = 1
    kmeans_max_iter: int = 100
    kmeans_init: str = "random"
    minibatch_kmeans_above: int = 20_000
    pairwise_batch_size: int = 1024
    embedding_model: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "lsh_weights", tuple(float(w) for w in self.lsh_weights))
        if len(self.lsh_weights) != 2 or abs(sum(self.lsh_weights) - 1.0) > 1e-9:
            raise ValueError(f"lsh_weights must be two weights summing to 1, got {self.lsh_weights}")
        if not 0.0 < self.minhash_threshold <= 1.0:
            raise ValueError(f"minhash_threshold must be in (0, 1], got {self.minhash_threshold}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be >= 1, got {self.shingle_size}")
        if not 0.0 <= self.semdedup_eps < 1.0:
            raise ValueError(f"semdedup_eps must be in [0, 1), got {self.semdedup_eps}")
        if self.semdedup_clusters is not None and self.semdedup_clusters < 1:
            raise ValueError(f"semdedup_clusters must be >= 1 or None, got {self.semdedup_clusters}")
        if self.keep not in ("hard", "easy", "random"):
            raise ValueError(f"keep must be 'hard', 'easy' or 'random', got {self.keep!r}")
        if self.kmeans_init not in ("random", "k-means++"):
            raise ValueError(f"kmeans_init must be 'random' or 'k-means++', got {self.kmeans_init!r}")
        if self.pairwise_batch_size < 1:
            raise ValueError("pairwise_batch_size must be >= 1")

    @property
    def sketch(self) -> str:
        """Everything that must match for two signatures to be comparable, as one string."""
        return sketch_spec(self.num_perm, self.minhash_seed, self.shingle_size)


def sketch_spec(num_perm: int, seed: int, shingle_size: int) -> str:
    return ";".join(
        [
            f"scheme={MINHASH_SCHEME}",
            f"hash={MINHASH_HASHFUNC}(prompt seed {PROMPT_HASH_SEED}, completion seed {COMPLETION_HASH_SEED})",
            f"num_perm={num_perm}",
            f"seed={seed}",
            f"shingle=word{shingle_size}",
            "words=punct-symbols-split",
            f"norm={TEXT_NORMALISATION}",
            f"exact={EXACT_HASH}",
            f"perm={_permutation_fingerprint(num_perm, seed)}",
        ]
    )


def _parse_spec(spec: str) -> dict[str, str]:
    out = {}
    for part in spec.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            raise SketchMismatchError(f"unreadable sketch description {spec!r}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------

HISTORY_COLUMNS = [
    "row_id",
    "week",
    "label",
    "exact_hash",
    "minhash",
    "minhash_prompt",
    "minhash_completion",
    "embedding",
    "minhash_scheme",
    "datasketch_version",
    "sketch",
    "embedding_model",
]


@dataclass
class DedupHistory:
    """What earlier weeks kept, to deduplicate the current week against.

    Arrays are aligned: one entry per kept row. `minhash_prompt` / `minhash_completion` are
    (n, num_perm) uint32 signatures of the two parts; `minhashes` (their element-wise
    minimum) is the row's signature, the one MinHashLSH indexes. `embeddings` is (n, dim)
    float32. `sketch` describes how the signatures were made (None: no signatures yet, so
    compatible with anything); `scheme` is the datasketch permutation scheme.
    """

    row_ids: np.ndarray
    labels: np.ndarray
    exact_hashes: np.ndarray
    minhash_prompt: np.ndarray
    minhash_completion: np.ndarray
    embeddings: np.ndarray
    weeks: np.ndarray | None = None
    scheme: str = MINHASH_SCHEME
    sketch: str | None = None
    datasketch_version: str = DATASKETCH_VERSION
    embedding_model: str | None = None

    def __post_init__(self):
        self.row_ids = np.asarray(self.row_ids, dtype=object)
        n = len(self.row_ids)
        self.labels = np.asarray(self.labels, dtype=bool)
        self.exact_hashes = np.asarray(self.exact_hashes, dtype=object)
        self.minhash_prompt = _as_matrix(self.minhash_prompt, np.uint32, n, "minhash_prompt")
        self.minhash_completion = _as_matrix(self.minhash_completion, np.uint32, n, "minhash_completion")
        self.embeddings = _as_matrix(self.embeddings, np.float32, n, "embeddings")
        self.weeks = np.full(n, None, dtype=object) if self.weeks is None else np.asarray(self.weeks, dtype=object)
        for name in ("labels", "exact_hashes", "minhash_prompt", "minhash_completion", "weeks"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"history {name} has {len(getattr(self, name))} entries for {n} rows")
        if self.minhash_prompt.shape != self.minhash_completion.shape:
            raise ValueError("history prompt and completion signatures differ in width")

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def num_perm(self) -> int:
        return self.minhash_prompt.shape[1]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def minhashes(self) -> np.ndarray:
        """(n, num_perm) uint32 MinHash signatures of the whole rows."""
        return np.minimum(self.minhash_prompt, self.minhash_completion)

    @classmethod
    def empty(cls, num_perm: int = 128, dim: int = 0) -> DedupHistory:
        return cls(
            row_ids=np.zeros(0, dtype=object),
            labels=np.zeros(0, dtype=bool),
            exact_hashes=np.zeros(0, dtype=object),
            minhash_prompt=np.zeros((0, num_perm), dtype=np.uint32),
            minhash_completion=np.zeros((0, num_perm), dtype=np.uint32),
            embeddings=np.zeros((0, dim), dtype=np.float32),
        )

    @classmethod
    def concat(cls, histories: Iterable[DedupHistory | None]) -> DedupHistory:
        """One history from several (e.g. the last K weeks'); empty ones are skipped."""
        histories = [h for h in histories if h is not None]
        full = [h for h in histories if len(h)]
        if not full:
            if histories:
                return cls.empty(histories[0].num_perm, histories[0].dim)
            return cls.empty()
        first = full[0]
        for h in full[1:]:
            if h.scheme != first.scheme:
                raise SketchMismatchError(
                    f"cannot combine histories of MinHash schemes {first.scheme!r} and {h.scheme!r}"
                )
            if h.sketch != first.sketch:
                raise SketchMismatchError(
                    f"cannot combine histories made with different sketches: {first.sketch!r} vs {h.sketch!r}"
                )
            if h.dim != first.dim:
                raise ValueError(f"cannot combine histories of embedding widths {first.dim} and {h.dim}")
        models = {h.embedding_model for h in full if h.embedding_model is not None}
        if len(models) > 1:
            raise ValueError(f"cannot combine histories of different embedding models: {sorted(models)}")
        return cls(
            row_ids=np.concatenate([h.row_ids for h in full]),
            labels=np.concatenate([h.labels for h in full]),
            exact_hashes=np.concatenate([h.exact_hashes for h in full]),
            minhash_prompt=np.concatenate([h.minhash_prompt for h in full]),
            minhash_completion=np.concatenate([h.minhash_completion for h in full]),
            embeddings=np.concatenate([h.embeddings for h in full]),
            weeks=np.concatenate([h.weeks for h in full]),
            scheme=first.scheme,
            sketch=first.sketch,
            datasketch_version=first.datasketch_version,
            embedding_model=next(iter(models), None),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per history row. Signatures and vectors are little-endian bytes
        (uint32 × num_perm, float32 × dim); every row also names the MinHash scheme, the
        datasketch version and the sketch description, so a mismatch is caught on load
        whatever storage the frame went through. `attrs` repeats them for an empty frame."""
        n = len(self)
        le32 = np.dtype("<u4")
        lef = np.dtype("<f4")
        sig = self.minhashes.astype(le32)
        sp = self.minhash_prompt.astype(le32)
        sc = self.minhash_completion.astype(le32)
        emb = self.embeddings.astype(lef)
        frame = pd.DataFrame(
            {
                "row_id": pd.Series(self.row_ids, dtype="str"),
                "week": pd.Series(self.weeks, dtype="str"),
                "label": pd.Series(self.labels, dtype="bool"),
                "exact_hash": pd.Series(self.exact_hashes, dtype="str"),
                "minhash": pd.Series([sig[i].tobytes() for i in range(n)], dtype=object),
                "minhash_prompt": pd.Series([sp[i].tobytes() for i in range(n)], dtype=object),
                "minhash_completion": pd.Series([sc[i].tobytes() for i in range(n)], dtype=object),
                "embedding": pd.Series([emb[i].tobytes() for i in range(n)], dtype=object),
                "minhash_scheme": pd.Series([self.scheme] * n, dtype="str"),
                "datasketch_version": pd.Series([self.datasketch_version] * n, dtype="str"),
                "sketch": pd.Series([self.sketch] * n, dtype="str"),
                "embedding_model": pd.Series([self.embedding_model] * n, dtype="str"),
            },
            columns=HISTORY_COLUMNS,
        )
        frame.attrs.update(
            {
                "minhash_scheme": self.scheme,
                "datasketch_version": self.datasketch_version,
                "sketch": self.sketch,
                "num_perm": self.num_perm,
                "embedding_dim": self.dim,
                "embedding_model": self.embedding_model,
            }
        )
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> DedupHistory:
        """Inverse of `to_frame`. Raises `SketchMismatchError` when the stored sketches were
        made with another MinHash scheme (e.g. datasketch < 2.0's "legacy"), other
        permutations, or an unknown scheme: such signatures cannot be compared with ours, and
        the earlier weeks must be recomputed."""
        attrs = getattr(frame, "attrs", {}) or {}
        if "minhash_scheme" not in frame.columns:
            raise SketchMismatchError(
                "history frame has no 'minhash_scheme' column: the MinHash scheme of its sketches is "
                f"unknown and they cannot be compared with {MINHASH_SCHEME!r} sketches"
            )
        missing = [c for c in ("row_id", "label", "exact_hash", "embedding") if c not in frame.columns]
        if missing:
            raise ValueError(f"history frame lacks columns {missing}")
        n = len(frame)
        schemes = _distinct(frame["minhash_scheme"]) if n else _distinct([attrs.get("minhash_scheme")])
        for scheme in schemes:
            if scheme != MINHASH_SCHEME:
                raise SketchMismatchError(
                    f"stored MinHash sketches use scheme {scheme!r} (datasketch "
                    f"{_first(frame, 'datasketch_version', attrs)}); this pipeline computes "
                    f"{MINHASH_SCHEME!r} sketches (datasketch {DATASKETCH_VERSION}). Sketches of "
                    "different schemes cannot be compared: recompute the earlier weeks' dedup history."
                )
        sketch = None
        if "sketch" in frame.columns and n:
            specs = _distinct(frame["sketch"])
            if len(specs) > 1:
                raise SketchMismatchError(f"history frame mixes sketch descriptions: {specs}")
            sketch = specs[0] if specs else None
        elif not n:
            sketch = attrs.get("sketch")
        if n and sketch is None:
            raise SketchMismatchError("history frame does not describe how its sketches were made ('sketch')")
        if sketch is not None:
            _check_spec_reproducible(sketch)
        version = _first(frame, "datasketch_version", attrs) or "unknown"
        models = _distinct(frame["embedding_model"]) if "embedding_model" in frame.columns and n else []
        if len(models) > 1:
            raise ValueError(f"history frame mixes embedding models: {models}")
        model = models[0] if models else (attrs.get("embedding_model") if not n else None)

        if not n:
            num_perm = int(attrs.get("num_perm") or (int(_parse_spec(sketch)["num_perm"]) if sketch else 128))
            hist = cls.empty(num_perm, int(attrs.get("embedding_dim") or 0))
            hist.sketch, hist.embedding_model, hist.datasketch_version = sketch, model, version
            return hist
        num_perm = int(_parse_spec(sketch)["num_perm"])
        if "minhash_prompt" in frame.columns and "minhash_completion" in frame.columns:
            sp = _decode(frame["minhash_prompt"], np.dtype("<u4"), num_perm, "minhash_prompt")
            sc = _decode(frame["minhash_completion"], np.dtype("<u4"), num_perm, "minhash_completion")
        else:
            raise SketchMismatchError(
                "history frame has no per-part signatures (minhash_prompt, minhash_completion)"
            )
        if "minhash" in frame.columns:
            whole = _decode(frame["minhash"], np.dtype("<u4"), num_perm, "minhash")
            if not np.array_equal(whole, np.minimum(sp, sc)):
                raise ValueError("history column minhash is not the union of minhash_prompt and minhash_completion")
        emb = _decode(frame["embedding"], np.dtype("<f4"), None, "embedding")
        weeks = frame["week"].to_numpy(dtype=object) if "week" in frame.columns else None
        if weeks is not None:
            weeks = np.array([None if is_missing(w) else str(w) for w in weeks], dtype=object)
        return cls(
            row_ids=np.array([str(r) for r in frame["row_id"]], dtype=object),
            labels=frame["label"].to_numpy(dtype=bool),
            exact_hashes=np.array([str(h) for h in frame["exact_hash"]], dtype=object),
            minhash_prompt=sp.astype(np.uint32),
            minhash_completion=sc.astype(np.uint32),
            embeddings=emb.astype(np.float32),
            weeks=weeks,
            scheme=MINHASH_SCHEME,
            sketch=sketch,
            datasketch_version=version,
            embedding_model=model,
        )


def _as_matrix(values, dtype, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"history {name} must have shape ({n}, width), got {arr.shape}")
    return arr


def _distinct(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if is_missing(v):
            continue
        v = str(v)
        if v not in out:
            out.append(v)
    return out


def _first(frame: pd.DataFrame, column: str, attrs: dict):
    if column in frame.columns and len(frame):
        vals = _distinct(frame[column])
        if vals:
            return vals[0]
    return attrs.get(column)


def _check_spec_reproducible(spec: str) -> None:
    parts = _parse_spec(spec)
    if parts.get("scheme") != MINHASH_SCHEME:
        raise SketchMismatchError(
            f"stored sketches use scheme {parts.get('scheme')!r}; this pipeline computes {MINHASH_SCHEME!r}"
        )
    try:
        num_perm, seed = int(parts["num_perm"]), int(parts["seed"])
    except (KeyError, ValueError):
        raise SketchMismatchError(f"sketch description {spec!r} lacks num_perm/seed") from None
    if num_perm < 2 or seed < 0:
        raise SketchMismatchError(f"sketch description {spec!r} has an invalid num_perm or seed")
    fingerprint = _permutation_fingerprint(num_perm, seed)
    if parts.get("perm") != fingerprint:
        raise SketchMismatchError(
            f"the installed datasketch {DATASKETCH_VERSION} generates other {MINHASH_SCHEME} permutations for "
            f"num_perm={num_perm}, seed={seed} than the stored sketches used: recompute the history"
        )


def _decode(values: pd.Series, dtype: np.dtype, width: int | None, name: str) -> np.ndarray:
    rows = []
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)):
            arr = np.frombuffer(bytes(v), dtype=dtype)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValueError(f"history column {name} has a missing value")
        else:
            arr = np.asarray(v, dtype=np.float64 if dtype.kind == "f" else np.int64)
            if dtype.kind == "u" and ((arr < 0).any() or (arr > np.iinfo(np.uint32).max).any()):
                raise ValueError(f"history column {name} has values outside uint32")
            arr = arr.astype(dtype)
        rows.append(arr)
    widths = {len(r) for r in rows}
    if len(widths) != 1 or (width is not None and widths != {width}):
        raise ValueError(f"history column {name} has widths {sorted(widths)}, expected {width or 'one width'}")
    return np.stack(rows)


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------


@dataclass
class DedupResult:
    """kept: the kept rows, input columns and dtypes, input order, fresh RangeIndex.
    dropped: the removed rows, input order, plus `reason` and `duplicate_of` (the row_id of the
        kept row or earlier week's row it duplicates; null for contradictions).
    kept_embeddings: the input embeddings of the kept rows, aligned with `kept`.
    week_history: the kept rows' hashes, sketches and vectors, for later weeks.
    counts: rows_in, kept, and one count per reason (all reasons, zeros included).
    info: parameters actually used (LSH bands, k, sketch), for run metadata.
    """

    kept: pd.DataFrame
    dropped: pd.DataFrame
    kept_embeddings: np.ndarray
    week_history: DedupHistory
    counts: dict[str, int]
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# deduplicate
# ---------------------------------------------------------------------------------------

_REQUIRED = ("row_id", "record_id", "timestamp", "prompt", "completion", "label")


def deduplicate(
    rows: pd.DataFrame,
    embeddings: np.ndarray | Callable[[pd.DataFrame], np.ndarray],
    history: DedupHistory | None = None,
    config: DedupConfig | None = None,
) -> DedupResult:
    """Remove contradictions, exact, near and semantic duplicates (see the module docstring
    for the rules), within the week and against `history`.

    rows: a frame with at least row_id (unique), record_id, timestamp, prompt, completion,
        label (bool); every column is carried through.
    embeddings: (len(rows), dim) L2-normalised vectors aligned with `rows` (see `embed_rows`),
        or a function of a frame of rows returning them. A function is called once, only on
        the rows the cheaper stages left, so no duplicate they caught is ever embedded.
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

    _contradictions(hashes, labels, rows["record_id"].to_numpy(dtype=object), reason)
    _exact(hashes, labels, rank, row_ids, history, reason, dup_of)
    lap("exact")

    alive = np.flatnonzero(reason == None)  # noqa: E711 - element-wise
    sig_p = np.zeros((n, config.num_perm), dtype=np.uint32)
    sig_c = np.zeros((n, config.num_perm), dtype=np.uint32)
    if len(alive):
        sp, sc = row_signatures(
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
    _near(sig_p, sig_c, labels, rank, row_ids, history, config, reason, dup_of)
    lap("minhash")

    if emb is None:
        alive = np.flatnonzero(reason == None)  # noqa: E711
        emb_alive = _checked_embeddings(embeddings(rows.iloc[alive]), len(alive))
        emb = np.zeros((n, emb_alive.shape[1]), dtype=np.float32)
        emb[alive] = emb_alive
        if len(history) and history.dim != emb.shape[1]:
            raise ValueError(f"history embeddings have width {history.dim}, this week's have {emb.shape[1]}")
        lap("embedding")
    info["embedding_dim"] = emb.shape[1]
    info["rows_embedded"] = int((reason == None).sum())  # noqa: E711
    info.update(_semantic(emb, labels, rank, row_ids, history, config, reason, dup_of))
    lap("semdedup")
    info["stages"] = stages

    kept_mask = reason == None  # noqa: E711
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
    if config.embedding_model and history.embedding_model and config.embedding_model != history.embedding_model:
        raise ValueError(
            f"history embeddings come from {history.embedding_model!r}, this run uses {config.embedding_model!r}"
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


# -- stage 1 ------------------------------------------------------------------------------


def _contradictions(hashes, labels, record_ids, reason) -> None:
    frame = pd.DataFrame({"h": hashes, "label": labels, "rec": record_ids})
    stats = frame.groupby("h", sort=False).agg(
        n=("label", "size"), n_true=("label", "sum"), n_rec=("rec", "nunique")
    )
    mixed = stats[(stats["n_true"] > 0) & (stats["n_true"] < stats["n"]) & (stats["n_rec"] > 1)]
    if mixed.empty:
        return
    groups = frame.groupby("h", sort=False).indices
    for h, row in mixed.iterrows():
        members = np.asarray(groups[h])
        n_true, n_false = int(row["n_true"]), int(row["n"] - row["n_true"])
        if n_true == n_false:
            reason[members] = DedupReason.CONTRADICTION_TIE
        else:
            minority = n_true < n_false  # the minority label
            losers = members[labels[members] == minority]
            reason[losers] = DedupReason.CONTRADICTION_MINORITY


# -- stage 2 ------------------------------------------------------------------------------


def _exact(hashes, labels, rank, row_ids, history: DedupHistory, reason, dup_of) -> None:
    seen: dict[tuple[str, bool], str] = {}
    for h, lab, rid in zip(history.exact_hashes, history.labels, history.row_ids):
        seen.setdefault((h, bool(lab)), rid)
    alive = np.flatnonzero(reason == None)  # noqa: E711
    for i in alive[np.argsort(rank[alive], kind="stable")]:
        key = (hashes[i], bool(labels[i]))
        earlier = seen.get(key)
        if earlier is not None:
            reason[i] = DedupReason.EXACT_DUPLICATE_EARLIER_WEEK
            dup_of[i] = earlier

    first: dict[tuple[str, bool], str] = {}
    alive = np.flatnonzero(reason == None)  # noqa: E711
    for i in alive[np.argsort(rank[alive], kind="stable")]:
        key = (hashes[i], bool(labels[i]))
        kept = first.get(key)
        if kept is None:
            first[key] = row_ids[i]
        else:
            reason[i] = DedupReason.EXACT_DUPLICATE
            dup_of[i] = kept


# -- stage 3 ------------------------------------------------------------------------------


def _near(sig_p, sig_c, labels, rank, row_ids, history: DedupHistory, config: DedupConfig, reason, dup_of) -> None:
    """One MinHashLSH per label holding the earlier weeks' rows and this week's; the LSH
    buckets that hold more than one key give the candidate pairs, which are then verified."""
    threshold = config.minhash_threshold
    params = lsh_params(threshold, config.num_perm, config.lsh_weights)
    n = len(reason)
    alive = np.flatnonzero(reason == None)  # noqa: E711
    if not len(alive):
        return
    alive = alive[np.argsort(rank[alive], kind="stable")]
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
        cur = alive[labels[alive] == label]
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
        for i in cur:
            cands = hist_cands.get(int(i))
            if not cands:
                continue
            cands = np.array(sorted(cands), dtype=np.int64)
            jp = estimated_jaccard(sig_p[i], h_p[cands])
            jc = estimated_jaccard(sig_c[i], h_c[cands])
            ok = (jp >= threshold) & (jc >= threshold)
            if ok.any():
                best = cands[int(np.argmax(np.where(ok, np.minimum(jp, jc), -1.0)))]
                reason[i] = DedupReason.NEAR_DUPLICATE_EARLIER_WEEK
                dup_of[i] = history.row_ids[best]

        # Within the week: verified pairs join groups; a group's root is its earliest row.
        for i in cur:
            if reason[i] is not None:
                continue
            cands = [j for j in week_cands.get(int(i), ()) if reason[j] is None]
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
    for i in alive:
        if reason[i] is None:
            root = find(int(i))
            if root != i:
                reason[i] = DedupReason.NEAR_DUPLICATE
                dup_of[i] = row_ids[root]


def _insert_many(lsh: MinHashLSH, keys: list, signatures: np.ndarray) -> None:
    """`lsh.insert(key, MinHash)` for many rows at once: the same band keys (each band's
    byte-swapped bytes, as MinHashLSH._byteswap makes them) into the same storages, but
    computed for all rows in one numpy pass instead of one MinHash object per row."""
    if lsh.hashfunc is not None or lsh.prepickle:
        raise ValueError("bulk insertion supports MinHashLSH's default band keys only")
    sigs = np.ascontiguousarray(signatures, dtype=np.uint32)
    if sigs.shape[1] != lsh.h:
        raise ValueError(f"expected signatures of {lsh.h} permutations, got {sigs.shape[1]}")
    bands = []
    for start, end in lsh.hashranges:
        band = np.ascontiguousarray(sigs[:, start:end].byteswap())
        bands.append(band.view(np.dtype((np.void, band.shape[1] * 4))).ravel().tolist())
    for key, *band_keys in zip(keys, *bands, strict=True):
        lsh.keys.insert(key, *band_keys)
    for table, band_keys in zip(lsh.hashtables, bands, strict=True):
        for key, band_key in zip(keys, band_keys, strict=True):
            table.insert(band_key, key)


def _shared_buckets(lsh: MinHashLSH):
    """The keys of every LSH bucket that holds more than one key, band by band."""
    for table in lsh.hashtables:
        for band_hash, count in table.itemcounts().items():
            if count > 1:
                yield table.get(band_hash)


# -- stage 4 ------------------------------------------------------------------------------


def _semantic(emb, labels, rank, row_ids, history: DedupHistory, config: DedupConfig, reason, dup_of) -> dict:
    alive = np.flatnonzero(reason == None)  # noqa: E711
    n = len(alive)
    if n == 0:
        return {"semdedup_clusters": 0}
    alive = alive[np.argsort(rank[alive], kind="stable")]  # canonical order: k-means sees a stable input
    x = _unit(emb[alive])
    k = config.semdedup_clusters if config.semdedup_clusters is not None else max(1, round(math.sqrt(n)))
    k = max(1, min(int(k), n))
    centroids, method = _spherical_kmeans(x, k, config)
    assign = _assign(x, centroids, config.pairwise_batch_size)
    threshold = np.float32(1.0 - config.semdedup_eps)
    block = config.pairwise_batch_size

    h_assign = None
    if len(history):
        h_x = _unit(history.embeddings)
        h_assign = _assign(h_x, centroids, block)

    rng = np.random.default_rng(config.seed)
    random_keys = rng.random(n) if config.keep == "random" else None
    for c in range(k):
        members = np.flatnonzero(assign == c)  # positions in `alive`, canonical order
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
            grp = members[labels[alive[members]] == label]
            if not len(grp):
                continue
            # Against earlier weeks' rows of the same label in this cluster.
            if h_assign is not None:
                h_idx = np.flatnonzero((h_assign == c) & (history.labels == label))
                if len(h_idx):
                    best_sim, best_j = _max_sim(x[grp], h_x[h_idx], block)
                    hit = best_sim >= threshold
                    for g, j in zip(grp[hit], best_j[hit]):
                        reason[alive[g]] = DedupReason.SEMANTIC_DUPLICATE_EARLIER_WEEK
                        dup_of[alive[g]] = history.row_ids[h_idx[j]]
                    grp = grp[~hit]
            if len(grp) < 2:
                continue
            best_sim, best_i = _max_sim_earlier(x[grp], block)
            rep = np.arange(len(grp))  # rep[j]: the kept row j stands for (itself if kept)
            for j in range(1, len(grp)):
                if best_sim[j] >= threshold:
                    i = best_i[j]
                    rep[j] = rep[i]
                    reason[alive[grp[j]]] = DedupReason.SEMANTIC_DUPLICATE
                    dup_of[alive[grp[j]]] = row_ids[alive[grp[rep[j]]]]
    return {"semdedup_clusters": k, "semdedup_kmeans": method, "semdedup_keep": config.keep}


def _spherical_kmeans(x: np.ndarray, k: int, config: DedupConfig) -> tuple[np.ndarray, str]:
    """k-means on unit vectors, centroids re-normalised: cosine k-means, as SemDeDup's faiss
    `Kmeans_with_cos_dist`. k == 1 needs no fitting."""
    if k == 1:
        return _unit(x.mean(axis=0, keepdims=True)), "mean"
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    common = {"n_clusters": k, "n_init": 1, "random_state": config.seed, "max_iter": config.kmeans_max_iter, "init": config.kmeans_init}
    if len(x) > config.minibatch_kmeans_above:
        model, method = MiniBatchKMeans(batch_size=4096, **common), "MiniBatchKMeans"
    else:
        model, method = KMeans(**common), "KMeans"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        model.fit(x)
    return _unit(model.cluster_centers_), method


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
