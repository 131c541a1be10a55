"""The settings of `deduplicate` (`DedupConfig`) and the drop reasons it reports (`DedupReason`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kto_pipeline.curate.dedup.sketch import sketch_spec


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


_SKETCH_NOTE = "part of the sketch: changing it makes earlier weeks' stored sketches incomparable (SketchMismatchError)"


@dataclass(frozen=True)
class DedupConfig:
    """Parameters of `deduplicate`: the near-duplicate sketch and LSH, and SemDeDup's clustering.

    A week's settings are stored with its history (`DedupHistory.config`, via `to_dict` /
    `from_dict`), so later screening can use the settings the week was deduplicated with.
    """

    minhash_threshold: float = field(
        default=0.8, metadata={"help": "Jaccard threshold of MinHashLSH and of the per-part check."}
    )
    lsh_weights: tuple[float, float] = field(
        default=(0.1, 0.9),
        metadata={
            "help": "MinHashLSH's (false positive, false negative) weights for choosing its bands. Every LSH "
            "candidate is verified against the threshold, so a false positive costs only a comparison: "
            "(0.1, 0.9) gives 14 bands × 9 rows at num_perm=128 (like datatrove's 14 × 8), which finds 87% "
            "of pairs at Jaccard 0.80, 97.5% at 0.85 and 99.5% at 0.88; MinHashLSH's default (0.5, 0.5) "
            "gives 9 × 13: 40%, 69% and 85%."
        },
    )
    num_perm: int = field(default=128, metadata={"help": f"MinHash permutations; {_SKETCH_NOTE}."})
    shingle_size: int = field(default=5, metadata={"help": f"Words per shingle; {_SKETCH_NOTE}."})
    semdedup_eps: float = field(default=0.05, metadata={"help": "Semantic duplicate when cosine >= 1 - eps."})
    semdedup_clusters: int | None = field(
        default=None, metadata={"help": "k of the spherical k-means; None → round(sqrt(n)), at least 1."}
    )
    seed: int = field(default=0, metadata={"help": 'k-means and keep="random" seed.'})
    keep: str = field(
        default="hard",
        metadata={
            "help": 'SemDeDup\'s order inside a cluster: "hard" (farthest from the centroid first, kept), '
            '"easy" (closest first) or "random".'
        },
    )
    minhash_seed: int = field(default=1, metadata={"help": f"Seed of the MinHash permutations; {_SKETCH_NOTE}."})
    kmeans_max_iter: int = field(default=100, metadata={"help": "k-means iterations (SemDeDup's configs use 100)."})
    kmeans_init: str = field(
        default="random",
        metadata={
            "help": '"random" (k rows drawn with `seed`, as faiss, which SemDeDup uses) or "k-means++" '
            "(much slower with sklearn on float32 vectors)."
        },
    )
    minibatch_kmeans_above: int = field(
        default=20_000, metadata={"help": "Use MiniBatchKMeans when more rows than this."}
    )
    pairwise_batch_size: int = field(
        default=1024, metadata={"help": "Block size of the pairwise cosine work (memory ∝ its square)."}
    )
    embedding_model: str | None = field(
        default=None, metadata={"help": "The embedder's name; recorded in the history and checked against it."}
    )

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

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-friendly (lsh_weights as a list); `from_dict` reads it back."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["lsh_weights"] = list(self.lsh_weights)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DedupConfig:
        """Inverse of `to_dict`. Absent fields take their defaults; unknown ones raise, because
        settings that cannot be represented would not be the settings a week ran with."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown DedupConfig fields {unknown}")
        return cls(**values)
