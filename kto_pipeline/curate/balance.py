"""KTO class balance: the held-out split, majority downsampling, class weights, the shuffle.

KTO's paper (and TRL, which only warns) asks that λD·nD / (λU·nU) lie in [1, 4/3], where
nD and nU count desirable and undesirable training rows and λ are the loss weights. This
module picks the weights, and prepares a week's rows for TRL's KTOTrainer:

1. Held-out split by record id. A record's rows (an edit's desirable and undesirable rows)
   stay on one side, and a row's side depends only on its id and the salt, never on the other
   rows, so reruns, and weeks that gain rows, keep every earlier row where it was.
2. Downsampling. Weights can fix any ratio on paper, but a weight of 30 on a handful of rows
   turns their noise into the gradient, so beyond `max_ratio` (default 10:1) the majority is
   cut to max_ratio × minority: the highest DEITA evol scores stay when the rows were scored,
   else a seeded, id-based choice.
3. Weights. The majority keeps weight 1 and the minority is raised until the ratio equals
   `target_ratio` (default 7/6, the middle of [1, 4/3], so rounding never leaves the range),
   as in the paper's 1:10 experiment (λD = 13.33). Raising rather than lowering a weight
   raises the effective learning rate on the minority, which is what the rule intends.
4. Shuffle. KTOTrainer trains in dataset order (its KL pairs come from consecutive rows), so
   the training rows are shuffled here with a seed derived from the config seed and the week.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import xxhash

RATIO_LOW = 1.0
RATIO_HIGH = 4.0 / 3.0

SPLIT_TRAIN = "train"
SPLIT_EVAL = "eval"

REASON_DOWNSAMPLED = "class_balance_downsampled"


@dataclass(frozen=True)
class BalanceConfig:
    """How a week's rows become KTO training rows: the held-out split, the downsampling of an
    extreme majority, the class-weight target, the shuffle."""

    eval_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of records held out for evaluation (chosen by record id, stable across reruns)"},
    )
    max_ratio: float = field(
        default=10.0, metadata={"help": "Majority:minority ratio beyond which the majority class is downsampled"}
    )
    target_ratio: float = field(
        default=7.0 / 6.0,
        metadata={"help": "λD·nD/(λU·nU) aimed at when a class weight must change (within [1, 4/3])"},
    )
    seed: int = field(default=0, metadata={"help": "Shuffle and downsampling seed (combined with the week)"})
    split_salt: str = field(default="kto-eval-v1", metadata={"help": "Change it to draw a different held-out set"})
    score_column: str = field(
        default="evol_score",
        metadata={"help": "When downsampling, keep the majority rows highest in this column, if present and scored"},
    )

    def __post_init__(self):
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_ratio < RATIO_HIGH:
            raise ValueError(f"max_ratio must be at least 4/3, got {self.max_ratio}")
        if not RATIO_LOW <= self.target_ratio <= RATIO_HIGH:
            raise ValueError(f"target_ratio must be in [1, 4/3], got {self.target_ratio}")


@dataclass(frozen=True)
class ClassWeights:
    desirable: float
    undesirable: float
    n_desirable: int
    n_undesirable: int

    @property
    def ratio(self) -> float:
        """λD·nD / (λU·nU); inf when there are no undesirable rows, nan when there are none at all."""
        return weighted_ratio(self.n_desirable, self.n_undesirable, self.desirable, self.undesirable)

    @property
    def in_range(self) -> bool:
        r = self.ratio
        return bool(np.isfinite(r) and RATIO_LOW <= r <= RATIO_HIGH)


def weighted_ratio(
    n_desirable: int, n_undesirable: int, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> float:
    num = desirable_weight * n_desirable
    den = undesirable_weight * n_undesirable
    if den == 0:
        return float("nan") if num == 0 else float("inf")
    return num / den


def kto_class_weights(n_desirable: int, n_undesirable: int, target_ratio: float = 7.0 / 6.0) -> ClassWeights:
    """(λD, λU) with λD·nD/(λU·nU) in [1, 4/3]: unchanged (1, 1) when the counts already are,
    else the minority's weight raised to reach `target_ratio`. With a class missing no weight
    helps: (1, 1), and `in_range` is False."""
    if not RATIO_LOW <= target_ratio <= RATIO_HIGH:
        raise ValueError(f"target_ratio must be in [1, 4/3], got {target_ratio}")
    if n_desirable < 0 or n_undesirable < 0:
        raise ValueError("class counts cannot be negative")
    wd = wu = 1.0
    if n_desirable and n_undesirable:
        r = n_desirable / n_undesirable
        if r < RATIO_LOW:
            wd = round(target_ratio / r, 6)
        elif r > RATIO_HIGH:
            wu = round(r / target_ratio, 6)
    return ClassWeights(wd, wu, int(n_desirable), int(n_undesirable))


def eval_split(record_ids: pd.Series, fraction: float, salt: str) -> np.ndarray:
    """True for held-out rows: the record id's salted 64-bit hash falls in the lowest `fraction`."""
    if fraction <= 0:
        return np.zeros(len(record_ids), dtype=bool)
    cut = int(fraction * 2**64)
    return np.array(
        [xxhash.xxh3_64_intdigest(f"{salt}\x00{rid}".encode()) < cut for rid in record_ids.astype(str)], dtype=bool
    )


def week_seed(seed: int, week: str | None) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32((week or "").encode())])


@dataclass
class BalanceResult:
    """rows: the training rows in shuffled order, then the held-out rows (by row_id), with a
        `split` column; input columns kept.
    dropped: majority rows cut by downsampling, with `reason`.
    weights: the class weights of the training rows.
    counts / info: for run metadata.
    """

    rows: pd.DataFrame
    dropped: pd.DataFrame
    weights: ClassWeights
    counts: dict[str, int]
    info: dict = field(default_factory=dict)

    @property
    def train(self) -> pd.DataFrame:
        return self.rows[self.rows["split"] == SPLIT_TRAIN].reset_index(drop=True)

    @property
    def eval(self) -> pd.DataFrame:
        return self.rows[self.rows["split"] == SPLIT_EVAL].reset_index(drop=True)


def balance(rows: pd.DataFrame, config: BalanceConfig | None = None, week: str | None = None) -> BalanceResult:
    config = config or BalanceConfig()
    missing = [c for c in ("row_id", "record_id", "label") if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}")
    if rows["row_id"].duplicated().any():
        raise ValueError("row_id must be unique")
    # Row-id order first, so the result depends on the set of rows, not on how they arrived.
    rows = rows.sort_values("row_id", kind="stable").reset_index(drop=True)
    held_out = eval_split(rows["record_id"], config.eval_fraction, config.split_salt)
    train, heldout = rows[~held_out], rows[held_out]

    rng = np.random.default_rng(week_seed(config.seed, week))
    train, dropped = _downsample(train, config, rng)

    order = rng.permutation(len(train))
    train = train.iloc[order].assign(split=SPLIT_TRAIN)
    heldout = heldout.assign(split=SPLIT_EVAL)
    out = pd.concat([train, heldout], ignore_index=True)
    out["split"] = out["split"].astype("str")

    n_d = int(train["label"].sum())
    n_u = int(len(train) - n_d)
    weights = kto_class_weights(n_d, n_u, config.target_ratio)
    e_d = int(heldout["label"].sum())
    counts = {
        "rows_in": len(rows),
        "train": len(train),
        "eval": len(heldout),
        "dropped": len(dropped),
        "train_desirable": n_d,
        "train_undesirable": n_u,
        "eval_desirable": e_d,
        "eval_undesirable": len(heldout) - e_d,
    }
    info = {"config": asdict(config), "raw_ratio": weighted_ratio(n_d, n_u), "weighted_ratio": weights.ratio}
    return BalanceResult(out, dropped, weights, counts, info)


def training_mix(parts: list[pd.DataFrame], seed: int = 0, week: str | None = None) -> pd.DataFrame:
    """One training set from several frames (a window of weeks, synthetic rows), shuffled.

    Each week's rows were shuffled on their own; appended frames would still put one week's
    (or all synthetic) rows in the last blocks of an epoch that TRL walks in order, so the
    union is put in row-id order and shuffled again with the seed and week.
    """
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return pd.DataFrame()
    rows = pd.concat(parts, ignore_index=True)
    if rows["row_id"].duplicated().any():
        raise ValueError("a row appears twice in the training window")
    rows = rows.sort_values("row_id", kind="stable").reset_index(drop=True)
    order = np.random.default_rng(week_seed(seed, week)).permutation(len(rows))
    return rows.iloc[order].reset_index(drop=True)


def _downsample(
    train: pd.DataFrame, config: BalanceConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = train["label"].to_numpy(dtype=bool)
    n_d, n_u = int(labels.sum()), int((~labels).sum())
    minority = min(n_d, n_u)
    majority_label = bool(n_d > n_u)
    limit = int(np.floor(config.max_ratio * minority))
    n_major = max(n_d, n_u)
    empty = train.iloc[0:0].assign(reason=pd.Series(dtype="str"))
    if minority == 0 or n_major <= limit:
        return train, empty
    major_idx = np.flatnonzero(labels == majority_label)
    # Random tie-break keys first, so equal scores (or no scores at all) fall to the seed.
    tiebreak = rng.random(len(major_idx))
    scores = None
    if config.score_column in train.columns:
        s = pd.to_numeric(train[config.score_column], errors="coerce").to_numpy(dtype=float)[major_idx]
        if np.isfinite(s).any():
            scores = np.where(np.isfinite(s), s, -np.inf)
    keys = (tiebreak,) if scores is None else (tiebreak, -scores)
    ranked = major_idx[np.lexsort(keys)]
    cut = np.sort(ranked[limit:])
    keep = np.ones(len(train), dtype=bool)
    keep[cut] = False
    dropped = train.iloc[cut].assign(reason=REASON_DOWNSAMPLED)
    dropped["reason"] = dropped["reason"].astype("str")
    return train[keep], dropped.reset_index(drop=True)
