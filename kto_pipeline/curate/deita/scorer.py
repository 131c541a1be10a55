"""`DeitaScorer`: a complexity and a quality backend → complexity, quality and evol_score per
row, each distinct prompt and each distinct (prompt, completion) scored once."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kto_pipeline.curate.deita.backends import ScoreBackend
from kto_pipeline.curate.deita.prompts import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE

SCORE_COLUMNS = ("complexity", "quality", "evol_score")


def _unique(keys: list[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    first: dict[Hashable, int] = {}
    inverse = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        inverse[i] = first.setdefault(key, len(first))
    return list(first), inverse


@dataclass
class ScoreResult:
    """scores: row_id (when the rows have one), complexity, quality, evol_score (float64),
    positionally aligned with the input rows. info: counts and backends, for run metadata."""

    scores: pd.DataFrame
    info: dict = field(default_factory=dict)


class DeitaScorer:
    """Complexity and quality backends → per-row DEITA scores.

    A row is scored as one turn: instruction = `prompt` (chat prompts are already a text
    rendering), output = `completion`. Each distinct prompt is scored for complexity once and
    each distinct (prompt, completion) for quality once.
    """

    def __init__(self, complexity: ScoreBackend, quality: ScoreBackend):
        self.complexity = complexity
        self.quality = quality

    def score(self, rows: pd.DataFrame) -> ScoreResult:
        missing = [c for c in ("prompt", "completion") if c not in rows.columns]
        if missing:
            raise ValueError(f"rows lack columns {missing}")
        prompts = [str(p) for p in rows["prompt"].tolist()]
        completions = [str(c) for c in rows["completion"].tolist()]
        uniq_prompts, inv_p = _unique(prompts)
        uniq_pairs, inv_pc = _unique(list(zip(prompts, completions)))

        def run(backend: ScoreBackend, template: str, fields: list[dict[str, str]]) -> tuple[np.ndarray, dict]:
            # Per-call deltas of the backend's counters: the two backends may be one object.
            before = dict(backend.stats)
            values = np.asarray(backend.score(backend.prepare(template, fields)), dtype=np.float64)
            if values.shape != (len(fields),):
                raise ValueError(f"{backend.name} returned {values.shape} scores for {len(fields)} prompts")
            return values, {k: v - before.get(k, 0) for k, v in backend.stats.items()}

        cx_unique, cx_stats = run(self.complexity, COMPLEXITY_TEMPLATE, [{"instruction": p} for p in uniq_prompts])
        q_unique, q_stats = run(
            self.quality, QUALITY_TEMPLATE, [{"instruction": p, "output": c} for p, c in uniq_pairs]
        )
        complexity, quality = cx_unique[inv_p], q_unique[inv_pc]

        frame = pd.DataFrame({"complexity": complexity, "quality": quality, "evol_score": complexity * quality})
        if "row_id" in rows.columns:
            frame.insert(0, "row_id", pd.Series(rows["row_id"].to_numpy(), dtype="str"))

        info = {
            "rows": len(rows),
            "unique_prompts": len(uniq_prompts),
            "unique_pairs": len(uniq_pairs),
            "complexity_backend": self.complexity.name,
            "quality_backend": self.quality.name,
            "complexity_stats": cx_stats,
            "quality_stats": q_stats,
        }
        return ScoreResult(scores=frame, info=info)
