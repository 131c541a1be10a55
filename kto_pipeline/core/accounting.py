"""Row accounting: every row a step reads is either kept or dropped with a reason.

A step hands its input, its output and its dropped rows to `account_rows` (by row id, so a row
counted twice or replaced by another is caught, not only a wrong total) or, where the input has
no ids (records read from dumps, rows a trainer reports as counts), to `account_counts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

_EXAMPLES = 5


@dataclass(frozen=True)
class RowAccount:
    """How a step's input divides into kept and dropped rows."""

    unit: str
    rows_in: int
    kept: int
    dropped: int
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    without_reason: int = 0
    missing: tuple[str, ...] = ()  # ids read but neither kept nor dropped
    unexpected: tuple[str, ...] = ()  # ids out that were never read
    kept_and_dropped: tuple[str, ...] = ()  # ids on both sides
    repeated: tuple[str, ...] = ()  # ids more than once among the outputs
    note: str = ""  # which hand-over the figures describe, where a step has several

    @property
    def unaccounted(self) -> int:
        """Rows in minus rows out (kept + dropped); 0 when the totals agree."""
        return self.rows_in - self.kept - self.dropped

    @property
    def balanced(self) -> bool:
        return (
            self.unaccounted == 0
            and self.without_reason == 0
            and not (self.missing or self.unexpected or self.kept_and_dropped or self.repeated)
        )

    def problems(self) -> list[str]:
        out = []
        if self.unaccounted:
            out.append(
                f"{self.rows_in} {self.unit} in, {self.kept} kept + {self.dropped} dropped: {self.unaccounted:+d} unaccounted"
            )
        if self.without_reason:
            out.append(f"{self.without_reason} dropped {self.unit} without a reason")
        for what, ids in (
            ("read but neither kept nor dropped", self.missing),
            ("out but never read", self.unexpected),
            ("both kept and dropped", self.kept_and_dropped),
            ("out more than once", self.repeated),
        ):
            if ids:
                out.append(f"{len(ids)} {self.unit} {what} (e.g. {', '.join(ids[:_EXAMPLES])})")
        return out

    def summary(self) -> str:
        if self.balanced:
            text = f"{self.rows_in} {self.unit} in = {self.kept} kept + {self.dropped} dropped with a reason"
        else:
            text = "; ".join(self.problems())
        return f"{self.note}: {text}" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.dropped,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "without_reason": self.without_reason,
            "missing": list(self.missing[:_EXAMPLES]),
            "unexpected": list(self.unexpected[:_EXAMPLES]),
            "kept_and_dropped": list(self.kept_and_dropped[:_EXAMPLES]),
            "repeated": list(self.repeated[:_EXAMPLES]),
            "balanced": self.balanced,
            "note": self.note,
        }


def _reasons(dropped: pd.DataFrame, reason_column: str) -> tuple[dict[str, int], int]:
    if dropped.empty:
        return {}, 0
    if reason_column not in dropped.columns:
        return {}, len(dropped)
    reasons = dropped[reason_column]
    given = reasons.notna() & reasons.astype(str).str.strip().ne("")
    counts = reasons[given].astype(str).value_counts().sort_index()
    return {str(k): int(v) for k, v in counts.items()}, int((~given).sum())


def account_rows(
    rows_in: Iterable[Any],
    kept: Iterable[Any],
    dropped: pd.DataFrame,
    *,
    id_column: str = "row_id",
    reason_column: str = "reason",
    unit: str = "rows",
) -> RowAccount:
    """Account by id: `rows_in` and `kept` are ids, `dropped` a frame with ids and reasons."""
    ids_in = [str(i) for i in rows_in]
    ids_kept = [str(i) for i in kept]
    ids_dropped = [str(i) for i in dropped[id_column]] if id_column in dropped.columns else []
    by_reason, without = _reasons(dropped, reason_column)
    if id_column not in dropped.columns and len(dropped):
        without = len(dropped)  # rows that cannot be traced are not accounted for
    seen_in = set(ids_in)
    out = pd.Series(ids_kept + ids_dropped, dtype="str")
    set_kept, set_dropped = set(ids_kept), set(ids_dropped)
    return RowAccount(
        unit=unit,
        rows_in=len(ids_in),
        kept=len(ids_kept),
        dropped=len(dropped),
        dropped_by_reason=by_reason,
        without_reason=without,
        missing=tuple(sorted(seen_in - set_kept - set_dropped)),
        unexpected=tuple(sorted((set_kept | set_dropped) - seen_in)),
        kept_and_dropped=tuple(sorted(set_kept & set_dropped)),
        repeated=tuple(sorted(set(out[out.duplicated()]))),
    )


def account_counts(
    rows_in: int,
    kept: int,
    dropped: Mapping[str, int] | pd.DataFrame,
    *,
    reason_column: str = "reason",
    unit: str = "rows",
    note: str = "",
) -> RowAccount:
    """Account by totals, for inputs without ids; `dropped` is counts per reason or a frame."""
    if isinstance(dropped, pd.DataFrame):
        by_reason, without = _reasons(dropped, reason_column)
        n_dropped = len(dropped)
    else:
        by_reason = {str(k): int(v) for k, v in dropped.items() if int(v)}
        without, n_dropped = 0, sum(by_reason.values())
    return RowAccount(
        unit=unit,
        rows_in=int(rows_in),
        kept=int(kept),
        dropped=n_dropped,
        dropped_by_reason=by_reason,
        without_reason=without,
        note=note,
    )
