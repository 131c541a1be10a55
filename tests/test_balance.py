import numpy as np
import pandas as pd
import pytest

from kto_pipeline.curate.balance import (
    RATIO_HIGH,
    RATIO_LOW,
    REASON_DOWNSAMPLED,
    BalanceConfig,
    balance,
    kto_class_weights,
    weighted_ratio,
)


def make_rows(n_desirable: int, n_undesirable: int, *, scores: bool = False, prefix: str = "r") -> pd.DataFrame:
    n = n_desirable + n_undesirable
    frame = pd.DataFrame(
        {
            "row_id": [f"{prefix}{i:05d}" for i in range(n)],
            "record_id": [f"{prefix}rec{i:05d}" for i in range(n)],
            "prompt": [f"prompt {i}" for i in range(n)],
            "completion": [f"answer {i}" for i in range(n)],
            "label": [True] * n_desirable + [False] * n_undesirable,
        }
    )
    if scores:
        frame["evol_score"] = np.linspace(1.0, 36.0, n)
    return frame


@pytest.mark.parametrize(
    "n_d, n_u, expect_d, expect_u",
    [
        (100, 100, 1.0, 1.0),  # 1:1 is in range: nothing changes
        (300, 100, 1.0, 3.0 / (7 / 6)),  # 3:1: undesirable raised to 2.571428
        (100, 500, 5.0 * 7 / 6, 1.0),  # 1:5: desirable raised to 5.833333
        (3000, 100, 1.0, 30.0 / (7 / 6)),  # 30:1 (before downsampling): 25.714286
        (120, 100, 1.0, 1.0),  # 1.2 already in [1, 4/3]
        (90, 100, (7 / 6) / 0.9, 1.0),  # 0.9 just below 1
    ],
)
def test_weight_rule_puts_the_weighted_ratio_in_range(n_d, n_u, expect_d, expect_u):
    w = kto_class_weights(n_d, n_u)
    assert w.desirable == pytest.approx(expect_d, abs=1e-5)
    assert w.undesirable == pytest.approx(expect_u, abs=1e-5)
    assert min(w.desirable, w.undesirable) == 1.0  # the majority is never down-weighted
    assert RATIO_LOW <= w.ratio <= RATIO_HIGH
    assert w.in_range


def test_weight_rule_with_a_missing_class_is_out_of_range():
    assert not kto_class_weights(50, 0).in_range
    assert kto_class_weights(50, 0).ratio == float("inf")
    assert not kto_class_weights(0, 50).in_range
    assert np.isnan(weighted_ratio(0, 0))
    with pytest.raises(ValueError):
        kto_class_weights(10, 10, target_ratio=1.5)


@pytest.mark.parametrize("n_d, n_u", [(100, 100), (300, 100), (100, 500), (3000, 100), (7, 400)])
def test_balanced_week_ends_in_range_and_accounts_for_every_row(n_d, n_u):
    rows = make_rows(n_d, n_u)
    result = balance(rows, BalanceConfig(), week="2026-11-16")
    assert result.weights.in_range
    assert result.counts["train"] + result.counts["eval"] + result.counts["dropped"] == len(rows)
    assert set(result.rows["row_id"]) | set(result.dropped["row_id"]) == set(rows["row_id"])
    assert not set(result.rows["row_id"]) & set(result.dropped["row_id"])
    train = result.train
    n_td, n_tu = int(train["label"].sum()), int((~train["label"]).sum())
    assert max(n_td, n_tu) <= 10 * min(n_td, n_tu)
    assert (result.weights.n_desirable, result.weights.n_undesirable) == (n_td, n_tu)


def test_thirty_to_one_is_downsampled_to_the_extreme_ratio():
    rows = make_rows(3000, 100)
    result = balance(rows, BalanceConfig(eval_fraction=0.0))
    assert result.counts["train_undesirable"] == 100
    assert result.counts["train_desirable"] == 1000
    assert len(result.dropped) == 2000
    assert (result.dropped["reason"] == REASON_DOWNSAMPLED).all()
    assert result.dropped["label"].all()  # only the majority loses rows
    assert result.weights.undesirable == pytest.approx(10 / (7 / 6), abs=1e-5)


def test_downsampling_keeps_the_best_scored_majority_rows():
    rows = make_rows(300, 20, scores=True)
    # Give the desirable rows scores in a shuffled order, so row order cannot explain the outcome.
    rng = np.random.default_rng(3)
    rows.loc[rows["label"], "evol_score"] = rng.permutation(300).astype(float)
    result = balance(rows, BalanceConfig(eval_fraction=0.0, max_ratio=5.0))
    kept = result.train[result.train["label"]]
    assert len(kept) == 100
    assert kept["evol_score"].min() > result.dropped["evol_score"].max()


def test_eval_split_is_stable_disjoint_and_keeps_records_together():
    rows = make_rows(400, 400)
    # Two rows per record for some records (an edit: desirable and undesirable on one record).
    rows.loc[400:449, "record_id"] = rows.loc[0:49, "record_id"].to_numpy()
    first = balance(rows, BalanceConfig(eval_fraction=0.2), week="2026-11-09")
    second = balance(rows.sample(frac=1.0, random_state=7), BalanceConfig(eval_fraction=0.2), week="2026-11-09")
    pd.testing.assert_frame_equal(first.rows, second.rows)  # input order does not matter
    eval_ids, train_ids = set(first.eval["row_id"]), set(first.train["row_id"])
    assert eval_ids and train_ids and not eval_ids & train_ids
    assert 0.12 < len(eval_ids) / len(rows) < 0.28
    side = first.rows.groupby("record_id")["split"].nunique()
    assert (side == 1).all()
    # More rows arriving later never move an earlier row across the split.
    grown = balance(
        pd.concat([rows, make_rows(50, 50, prefix="z")]), BalanceConfig(eval_fraction=0.2), week="2026-11-09"
    )
    assert eval_ids <= set(grown.eval["row_id"])
    assert not eval_ids & set(grown.train["row_id"])


def test_training_rows_are_shuffled_with_the_seed_and_week():
    rows = make_rows(200, 200)
    a = balance(rows, BalanceConfig(eval_fraction=0.0, seed=1), week="2026-11-09").train["row_id"].tolist()
    b = balance(rows, BalanceConfig(eval_fraction=0.0, seed=1), week="2026-11-09").train["row_id"].tolist()
    c = balance(rows, BalanceConfig(eval_fraction=0.0, seed=2), week="2026-11-09").train["row_id"].tolist()
    d = balance(rows, BalanceConfig(eval_fraction=0.0, seed=1), week="2026-11-16").train["row_id"].tolist()
    assert a == b
    assert a != sorted(a)  # not left in id order
    assert a != c and a != d
    # Mixed enough that consecutive rows (TRL's KL pairs) are not all one class.
    labels = balance(rows, BalanceConfig(eval_fraction=0.0, seed=1), week="2026-11-09").train["label"].to_numpy()
    assert (labels[1:] != labels[:-1]).mean() > 0.3


def test_bad_config_and_input_fail_clearly():
    with pytest.raises(ValueError, match="eval_fraction"):
        BalanceConfig(eval_fraction=1.0)
    with pytest.raises(ValueError, match="max_ratio"):
        BalanceConfig(max_ratio=1.0)
    rows = make_rows(3, 3)
    with pytest.raises(ValueError, match="row_id must be unique"):
        balance(pd.concat([rows, rows]))
    with pytest.raises(ValueError, match="lack columns"):
        balance(rows.drop(columns=["record_id"]))


def test_training_mix_shuffles_the_union_reproducibly_and_refuses_repeats():
    from kto_pipeline.curate.balance import training_mix

    week_a, week_b, synthetic = (
        make_rows(40, 40, prefix="a"),
        make_rows(40, 40, prefix="b"),
        make_rows(20, 0, prefix="s"),
    )
    mixed = training_mix([week_a, week_b, synthetic], seed=0, week="2026-11-16")
    assert sorted(mixed["row_id"]) == sorted(pd.concat([week_a, week_b, synthetic])["row_id"])
    again = training_mix([synthetic, week_b, week_a], seed=0, week="2026-11-16")
    assert mixed["row_id"].tolist() == again["row_id"].tolist()  # the order of the parts does not matter
    # Synthetic rows are spread through the epoch, not left at its end.
    positions = np.flatnonzero(mixed["row_id"].str.startswith("s").to_numpy())
    assert positions.min() < len(mixed) / 4 and positions.max() > 3 * len(mixed) / 4
    with pytest.raises(ValueError, match="twice"):
        training_mix([week_a, week_a])
