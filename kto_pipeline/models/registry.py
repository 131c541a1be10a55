"""Where the weekly checkpoints live and which one is the champion.

Layout under one root (a local folder; checkpoints are model folders the trainer writes):

    <root>/checkpoints/<week>/          the week's checkpoint (Hugging Face folder + manifest)
    <root>/work/<week>/                 the trainer's working folder (resumable checkpoints)
    <root>/reports/<week>/              the week's eval report (Markdown + PNGs)
    <root>/promotions/<week>.json       one file per promoted week

The champion is derived, never stored as a mutable pointer: the champion *before* week W is
the latest promoted week earlier than W, and the current champion is the latest promoted week.
So re-running week W's evaluation compares against the same champion as the first time, and a
promotion record is written once, atomically, only when the gate passes. Withdrawing a
promotion (a bad model found later) is deleting its record; the previous one is champion again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kto_pipeline.models.manifest import read_manifest

EVAL_SUMMARY = "eval_summary.json"  # in a report folder: the report's numbers and the decision, for tools


@dataclass(frozen=True)
class Champion:
    week: str
    checkpoint: str
    record: dict[str, Any]


class ModelRegistry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def checkpoint_dir(self, week: str) -> Path:
        return self.root / "checkpoints" / week

    def work_dir(self, week: str) -> Path:
        return self.root / "work" / week

    def report_dir(self, week: str) -> Path:
        return self.root / "reports" / week

    def _promotions(self) -> Path:
        return self.root / "promotions"

    def checkpoint(self, week: str) -> Path | None:
        """The week's finished checkpoint folder (one with a manifest), or None."""
        folder = self.checkpoint_dir(week)
        return folder if read_manifest(folder) is not None else None

    def promoted_weeks(self) -> list[str]:
        folder = self._promotions()
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json"))

    def _champion(self, weeks: list[str]) -> Champion | None:
        for week in reversed(weeks):
            record = json.loads((self._promotions() / f"{week}.json").read_text())
            if read_manifest(record["checkpoint"]) is not None:
                return Champion(week, record["checkpoint"], record)
        return None

    def champion(self) -> Champion | None:
        """The latest promoted checkpoint (what production should serve), or None: the base."""
        return self._champion(self.promoted_weeks())

    def champion_before(self, week: str) -> Champion | None:
        """The champion a candidate trained on `week` is compared against."""
        return self._champion([w for w in self.promoted_weeks() if w < week])

    def promote(self, week: str, record: dict[str, Any]) -> Path:
        """Record `week`'s checkpoint as promoted (idempotent: a rerun rewrites the same file)."""
        checkpoint = self.checkpoint(week)
        if checkpoint is None:
            raise FileNotFoundError(f"week {week} has no finished checkpoint under {self.checkpoint_dir(week)}")
        folder = self._promotions()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{week}.json"
        tmp = folder / f".{week}.json.tmp"
        tmp.write_text(
            json.dumps({"week": week, "checkpoint": str(checkpoint), **record}, indent=1, sort_keys=True, default=str)
        )
        tmp.replace(path)
        return path

    def withdraw(self, week: str) -> bool:
        """Remove `week`'s promotion (a rerun whose gate now fails); True when there was one."""
        path = self._promotions() / f"{week}.json"
        if path.exists():
            path.unlink()
            return True
        return False
