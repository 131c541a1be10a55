"""Generated rows through the same gates as real feedback: redaction, dedup, then the cap.

A teacher's text can repeat PII from the conversation it saw, copy the answer it was shown,
or say what a real row already says. So generated rows are redacted with the week's Presidio
configuration (and dropped if the re-scan still finds PII), dropped when they copy their
source answer, deduplicated with the week's rules against everything already kept (earlier
weeks and this week's real rows, through the dedup history; such matches carry the
`*_earlier_week` reasons), and only then capped. Every generated row ends kept or dropped
with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kto_pipeline.curate.dedup import DedupConfig, DedupHistory, deduplicate, embed_rows, normalise_text
from kto_pipeline.curate.redaction import RedactionConfig, redact, scan_for_leaks
from kto_pipeline.curate.synthesis.cap import apply_cap
from kto_pipeline.curate.synthesis.plan import SynthesisPlan

PII_LEFT = "pii_left"
COPIED_SOURCE = "copied_source"

DROPPED_COLUMNS = ["row_id", "reason", "detail", "label", "prompt", "completion"]


@dataclass
class ScreenResult:
    kept: pd.DataFrame
    dropped: pd.DataFrame  # DROPPED_COLUMNS
    counts: dict[str, int]
    info: dict = field(default_factory=dict)


def empty_dropped() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="bool" if c == "label" else "str") for c in DROPPED_COLUMNS})


def _dropped(rows: pd.DataFrame, reason: str | pd.Series, detail: str | pd.Series) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "row_id": rows["row_id"].astype("str").to_numpy(),
            "reason": reason if isinstance(reason, str) else reason.to_numpy(),
            "detail": detail if isinstance(detail, str) else detail.to_numpy(),
            "label": rows["label"].astype(bool).to_numpy(),
            "prompt": rows["prompt"].astype("str").to_numpy(),
            "completion": rows["completion"].astype("str").to_numpy(),
        }
    )
    return out.astype({"row_id": "str", "reason": "str", "detail": "str", "prompt": "str", "completion": "str"})


def with_generation_drops(
    screened: pd.DataFrame, generation_dropped: pd.DataFrame, short_label: bool | None
) -> pd.DataFrame:
    """One frame of every generated row that did not make it: the generation's own drops
    (empty or failed generations: no text) and the screening's."""
    if generation_dropped.empty:
        return screened
    gen = pd.DataFrame(
        {
            "row_id": generation_dropped["row_id"].astype("str").to_numpy(),
            "reason": generation_dropped["reason"].astype("str").to_numpy(),
            "detail": generation_dropped["detail"].astype("str").to_numpy(),
            "label": bool(short_label),
            "prompt": pd.Series([None] * len(generation_dropped), dtype="str"),
            "completion": pd.Series([None] * len(generation_dropped), dtype="str"),
        }
    )
    return pd.concat([gen, screened], ignore_index=True) if len(screened) else gen


def screen_generated(
    generated: pd.DataFrame,
    plan: SynthesisPlan,
    source_rows: pd.DataFrame,
    *,
    redaction: RedactionConfig,
    history: DedupHistory | None,
    dedup: DedupConfig,
    embed: Callable[[list[str]], np.ndarray],
) -> ScreenResult:
    """Redact, drop copies, deduplicate and cap `generated` (rows from `generate_synthetic`).

    source_rows: the rows the plan drew its prompts from (to spot a copied answer).
    history: what is already kept (earlier weeks plus this week's real rows).
    """
    counts = {"generated": len(generated)}
    parts: list[pd.DataFrame] = []
    if generated.empty:
        return ScreenResult(generated, empty_dropped(), counts | {"kept": 0})

    rows = redact(generated, redaction).rows
    leaks = scan_for_leaks(rows, redaction)
    leaked = {leak.row_id: f"{leak.entity_type} in {leak.field}" for leak in leaks}
    mask = rows["row_id"].isin(leaked)
    parts.append(_dropped(rows[mask], PII_LEFT, rows.loc[mask, "row_id"].map(leaked)))
    rows = rows[~mask].reset_index(drop=True)
    counts[PII_LEFT] = int(mask.sum())

    answer_of = dict(zip(source_rows["row_id"].astype(str), source_rows["completion"].astype(str)))
    source_of = {r.row_id: r.source_row_id for r in plan.requests}
    copied = np.array(
        [
            normalise_text(c) == normalise_text(answer_of.get(source_of.get(rid, ""), "\x00"))
            for rid, c in zip(rows["row_id"].astype(str), rows["completion"].astype(str))
        ],
        dtype=bool,
    )
    parts.append(_dropped(rows[copied], COPIED_SOURCE, "the teacher repeated the answer it was shown"))
    rows = rows[~copied].reset_index(drop=True)
    counts[COPIED_SOURCE] = int(copied.sum())

    deduped = deduplicate(rows, lambda frame: embed_rows(frame, embed), history, dedup)
    d = deduped.dropped
    parts.append(_dropped(d, d["reason"], "duplicate of " + d["duplicate_of"].fillna("").astype(str)))
    counts.update({r: int(n) for r, n in d["reason"].value_counts().items()})

    capped = apply_cap(deduped.kept, plan)
    over = deduped.kept[deduped.kept["row_id"].isin(set(capped.dropped["row_id"]))]
    parts.append(_dropped(over, "over_cap", f"target {capped.n_target} rows"))
    counts["over_cap"] = len(over)
    counts["kept"] = len(capped.kept)
    nonempty = [p for p in parts if len(p)]
    dropped = pd.concat(nonempty, ignore_index=True) if nonempty else empty_dropped()
    assert counts["generated"] == counts["kept"] + len(dropped)
    return ScreenResult(capped.kept, dropped, counts, {"dedup": deduped.info, "n_target": capped.n_target})
