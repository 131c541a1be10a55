"""One rule for "no value", shared by every stage."""

from __future__ import annotations

from typing import Any

import pandas as pd


def is_missing(value: Any) -> bool:
    """True for None, NaN, pd.NA / NaT and a blank (empty or whitespace-only) string.

    A list, tuple, dict or array is a value even when empty: a chat with no messages is the
    contract's business to reject, not a missing field. Every stage uses this one rule, so a
    field that ingestion treats as absent is absent for dedup, training and the simulator too.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, dict)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays: pd.isna answers per element
        return False
