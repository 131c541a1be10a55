"""The curation benchmark's embedder backends: the week deduplicated with each backend, and how
many of SemDeDup's and the diversity selection's decisions each keeps from torch's fp32 model."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd


def _rate(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def dedup_with(rows: pd.DataFrame, backend: str, cache_dir: str | None):
    """One deduplication of `rows` with an embedder on `backend`; returns the result, the
    embedder and the vectors it made, by row_id (for the agreement checks)."""
    from kto_pipeline.curate.dedup import DedupConfig, deduplicate, embed_rows
    from kto_pipeline.curate.embeddings import TextEmbedder

    embedder = TextEmbedder(device="cpu", backend=backend, cache_dir=cache_dir)
    t = time.perf_counter()
    embedder.embed(["warm up"])  # loads the model (and exports the ONNX graph on first use)
    load_s = time.perf_counter() - t
    made: dict = {}

    def embed(frame):
        vectors = embed_rows(frame, embedder.embed)
        made.update(zip(frame["row_id"].astype(str), vectors))
        return vectors

    result = deduplicate(rows, embed, None, DedupConfig(embedding_model=embedder.name))
    return result, embedder, made, load_s


def decisions(result) -> dict[str, str]:
    """row_id → "kept" or its drop reason."""
    out = {rid: "kept" for rid in result.kept["row_id"].astype(str)}
    out.update(zip(result.dropped["row_id"].astype(str), result.dropped["reason"].astype(str)))
    return out


def agreement(a: dict[str, str], b: dict[str, str], reason: str) -> dict:
    """Same decision share over the rows SemDeDup saw (kept, or dropped by it, in `a`: the exact
    and MinHash stages decide the others alike whatever the embedder), and the overlap of the
    rows `reason` dropped."""
    a = {r: v for r, v in a.items() if v == "kept" or v.startswith("semantic_duplicate")}
    same = sum(a[r] == b[r] for r in a)
    da = {r for r, v in a.items() if v == reason}
    db = {r for r, v in b.items() if v == reason}
    return {
        "rows": len(a),
        "same_decision": same / max(1, len(a)),
        "dropped_reference": len(da),
        "dropped_other": len(db),
        "dropped_both": len(da & db),
        "dropped_jaccard": len(da & db) / max(1, len(da | db)),
    }


def selection_agreement(
    kept: pd.DataFrame, scores: pd.DataFrame, per_backend: dict[str, np.ndarray], thresholds: tuple[float, ...]
) -> dict:
    """DEITA's diversity selection on the same rows and scores with each embedder backend's
    vectors, against torch's fp32 selection: the share of rows with the same keep/drop decision."""
    from kto_pipeline.curate.select import SelectionConfig, select_diverse

    if "torch" not in per_backend:
        return {}
    ids = kept["row_id"].astype(str)
    out: dict = {}
    for threshold in thresholds:
        config = SelectionConfig(threshold=threshold)
        ref = set(select_diverse(kept, scores, per_backend["torch"], config).kept["row_id"].astype(str))
        for backend, vectors in per_backend.items():
            got = set(select_diverse(kept, scores, vectors, config).kept["row_id"].astype(str))
            same = sum((r in ref) == (r in got) for r in ids)
            out.setdefault(backend, {})[str(threshold)] = {
                "rows": len(ids),
                "kept_reference": len(ref),
                "kept_other": len(got),
                "same_decision": same / max(1, len(ids)),
            }
    return out


def backend_lines(week: dict) -> list[str]:
    notes = week.get("embedder_backends") or {}
    if not notes:
        return []
    if not any("semdedup_agreement" in note for note in notes.values()):  # one backend, no torch reference
        return [
            "",
            *(
                f"Embedder backend {b} ({note['embedder'].rsplit('|', 1)[-1]}): {_rate(note['rows_per_s'])} rows/s; "
                "not compared with torch in this week."
                for b, note in notes.items()
            ),
        ]
    sel = week.get("selection_agreement") or {}
    thresholds = sorted({t for by_t in sel.values() for t in by_t}, reverse=True)
    head = "| embedder backend | rows/s | × torch | SemDeDup same decision | semantic drops (torch / this / both) |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    for t in thresholds:
        head += f" selection same decision (threshold {t}) |"
        rule += " ---: |"
    lines = [
        "",
        "The week deduplicated again with each embedder backend (same rows, same config); agreement is with torch's fp32",
        "model: the share of the embedded rows whose SemDeDup decision (kept or dropped) is the same, and for the diversity",
        "selection the share of the deduplicated rows it keeps or drops alike, given the same scores (at the asset's",
        "threshold and at a stricter one, where it drops more).",
        "",
        head,
        rule,
    ]
    for backend, note in notes.items():
        agree = note.get("semdedup_agreement") or {}
        row = (
            f"| {backend} | {_rate(note['rows_per_s'])} | {note.get('speedup_vs_torch', float('nan')):.2f}× "
            f"| {agree.get('same_decision', float('nan')):.2%} "
            f"| {agree.get('dropped_reference', '')} / {agree.get('dropped_other', '')} / {agree.get('dropped_both', '')} |"
        )
        for t in thresholds:
            v = sel.get(backend, {}).get(t)
            row += f" {v['same_decision']:.2%} (kept {v['kept_other']:,} vs {v['kept_reference']:,}) |" if v else " |"
        lines.append(row)
    return lines
