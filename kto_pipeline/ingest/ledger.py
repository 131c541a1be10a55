"""What became of every record read: the rows, the quarantine, and a ledger of fates.

Each record read from a dump has one entry in the ledger: its week, where it was read, the
adapter that read it, its role (a whole `record`, a `response`, a `rating`) and its fate:
`kept` (it made training rows, alone or joined), `quarantined` (bad input; details in the
quarantine frame) or `skipped` (valid but not trained on: unrated, superseded, ...). So
records in = kept + quarantined + skipped, per week and per format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kto_pipeline.core.accounting import RowAccount, account_counts
from kto_pipeline.ingest.contract import (
    SIGNAL_DEMONSTRATION,
    SIGNAL_EDIT,
    SIGNAL_PAIR_CHOSEN,
    Reason,
    frame_from_records,
)
from kto_pipeline.ingest.parts import SkipReason

KEPT, QUARANTINED, SKIPPED = "kept", "quarantined", "skipped"
ROLE_RECORD, ROLE_RESPONSE, ROLE_RATING = "record", "response", "rating"
UNREADABLE_FORMAT = "unreadable"  # a record that did not parse, so no adapter saw it

LEDGER_DTYPES: dict[str, str] = {
    "week": "str",
    "dump": "str",
    "line": "int64",
    "format": "str",
    "role": "str",
    "fate": "str",
    "reason": "str",  # why quarantined or skipped; null when kept
}

_JOINED_RATING_FATES = {SkipReason.SUPERSEDED, SkipReason.RESPONSE_QUARANTINED}


def ledger_frame(entries: list[dict]) -> pd.DataFrame:
    return frame_from_records(sorted(entries, key=lambda e: (e["dump"], e["line"])), LEDGER_DTYPES)


def records_kept(rows: pd.DataFrame) -> int:
    """Input records behind a frame of rows (an edit or a pair gives two rows, one record)."""
    return int(rows[["dump", "line"]].drop_duplicates().shape[0])


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


@dataclass
class IngestResult:
    rows: pd.DataFrame
    quarantine: pd.DataFrame
    ledger: pd.DataFrame  # one entry per record read (LEDGER_DTYPES)
    trivial_edits: Counter  # week → edits too small to become rows

    @property
    def records_in(self) -> Counter:
        """week → records read (kept + quarantined + skipped)."""
        return Counter({str(k): int(v) for k, v in self.ledger["week"].value_counts().items()})

    def weeks(self) -> set[str]:
        return set(self.ledger["week"])

    def weeks_by_dump(self) -> dict[str, set[str]]:
        """dump name → the weeks its records ended up in (joined or not)."""
        return {str(d): set(g["week"]) for d, g in self.ledger.groupby("dump", sort=True)}

    def for_week(self, week: str) -> IngestResult:
        def pick(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["week"] == week].reset_index(drop=True)

        return IngestResult(
            pick(self.rows), pick(self.quarantine), pick(self.ledger), Counter({week: self.trivial_edits[week]})
        )

    def by_format(self) -> dict[str, dict[str, int]]:
        """format → records read, ratings joined to a response, orphaned ratings, unrated
        responses, records kept (in rows), quarantined and skipped."""
        out = {}
        for fmt, part in self.ledger.groupby("format", sort=True):
            ratings = part[part["role"] == ROLE_RATING]
            out[str(fmt)] = {
                "records": len(part),
                "joined": int(((ratings["fate"] == KEPT) | ratings["reason"].isin(_JOINED_RATING_FATES)).sum()),
                "orphaned": int((part["reason"] == Reason.ORPHAN_FEEDBACK).sum()),
                "unrated": int((part["reason"] == SkipReason.UNRATED).sum()),
                "kept": int((part["fate"] == KEPT).sum()),
                "quarantined": int((part["fate"] == QUARANTINED).sum()),
                "skipped": int((part["fate"] == SKIPPED).sum()),
            }
        return out

    def account(self) -> RowAccount:
        """Records in = kept + dropped, where dropped is quarantined or skipped, each with its reason."""
        skipped = self.ledger.loc[self.ledger["fate"] == SKIPPED, ["reason"]]
        dropped = pd.concat([self.quarantine[["reason"]], skipped], ignore_index=True)
        # By frame, so a dropped record without a reason leaves the account unbalanced.
        return account_counts(len(self.ledger), int((self.ledger["fate"] == KEPT).sum()), dropped, unit="records")

    def summary(self) -> dict[str, Any]:
        """Counts a person checks first; records in = kept + quarantined + skipped."""
        signals = self.rows["signal"].value_counts()
        fates = self.ledger["fate"]
        return {
            "records_in": len(self.ledger),
            "records_kept": int((fates == KEPT).sum()),
            "records_quarantined": len(self.quarantine),
            "records_skipped": int((fates == SKIPPED).sum()),
            "rows_out": len(self.rows),
            "desirable": int(self.rows["label"].sum()),
            "undesirable": int((~self.rows["label"]).sum()),
            "edits_expanded": int(signals.get(SIGNAL_EDIT, 0)),
            "trivial_edits_skipped": int(sum(self.trivial_edits.values())),
            "pairs_expanded": int(signals.get(SIGNAL_PAIR_CHOSEN, 0)),
            "demonstrations": int(signals.get(SIGNAL_DEMONSTRATION, 0)),
            "quarantined_by_reason": _counts(self.quarantine["reason"]),
            "skipped_by_reason": _counts(self.ledger.loc[fates == SKIPPED, "reason"]),
            "by_format": self.by_format(),
        }
