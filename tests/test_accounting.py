"""Row accounting: the rule every step's `rows_accounted` check applies."""

import pandas as pd

from kto_pipeline.core.accounting import account_counts, account_rows


def dropped(ids, reasons):
    return pd.DataFrame({"row_id": ids, "reason": reasons})


def test_every_row_kept_or_dropped_with_a_reason_balances():
    account = account_rows(["a", "b", "c", "d"], ["a", "c"], dropped(["b", "d"], ["exact", "minhash"]))
    assert account.balanced
    assert account.dropped_by_reason == {"exact": 1, "minhash": 1}
    assert account.summary() == "4 rows in = 2 kept + 2 dropped with a reason"


def test_a_lost_row_is_named():
    account = account_rows(["a", "b", "c"], ["a"], dropped(["b"], ["exact"]))
    assert not account.balanced
    assert account.missing == ("c",) and account.unaccounted == 1
    assert "c" in account.summary()


def test_a_swapped_row_fails_although_the_totals_agree():
    account = account_rows(["a", "b"], ["a", "z"], dropped([], []))
    assert account.unaccounted == 0
    assert not account.balanced
    assert account.missing == ("b",) and account.unexpected == ("z",)


def test_a_row_both_kept_and_dropped_or_kept_twice_fails():
    both = account_rows(["a", "b"], ["a"], dropped(["a"], ["exact"]))
    assert both.kept_and_dropped == ("a",) and not both.balanced
    twice = account_rows(["a", "b"], ["a", "a"], dropped([], []))
    assert twice.repeated == ("a",) and not twice.balanced


def test_a_drop_without_a_reason_fails():
    for reason in (None, "", "  "):
        account = account_rows(["a", "b"], ["a"], dropped(["b"], [reason]))
        assert account.without_reason == 1 and not account.balanced, reason
    no_column = account_rows(["a", "b"], ["a"], pd.DataFrame({"row_id": ["b"]}))
    assert not no_column.balanced


def test_counts_for_inputs_without_ids():
    assert account_counts(10, 7, {"malformed_json": 2, "missing_prompt": 1}, unit="records").balanced
    short = account_counts(10, 7, {"malformed_json": 2}, unit="records", note="dumps → rows")
    assert not short.balanced and short.summary().startswith("dumps → rows: 10 records in, 7 kept + 2 dropped")
    frame = account_counts(3, 1, dropped(["x", "y"], ["malformed_json", None]))
    assert frame.without_reason == 1 and not frame.balanced
