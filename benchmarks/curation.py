"""Curation benchmark: one generated week from raw rows to balanced training rows (redaction,
deduplication, DEITA scoring, DEITA's diversity-aware selection, KTO class balance), per
stage, against each library's default path (or a plain loop) in the same run.

    .venv/bin/python -m benchmarks.curation                 # 10k and 100k rows (about 30 min)
    .venv/bin/python -m benchmarks.curation --sizes 2000    # quick check of every stage

Writes benchmarks/results/curation.json and curation.md. Figures are rows per second and
peak resident memory (this process and its workers) above the stage's starting point.
Baselines run on a sample of the week (they are slow); rows/s compare like for like.

DEITA scoring runs a tiny random Llama (kto_pipeline.devtools.tiny_models, built once into
--scorer-dir) on the CPU: the real code path, nonsense scores. Weeks with more deduplicated
rows than --score-all-upto score their first --score-sample rows and extrapolate the week's
scoring time by distinct-prompt count (labelled as such); the other rows get stand-in scores
drawn from the scored ones so that selection and balance run on every row.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from benchmarks.corpus import make_rows
from benchmarks.embedder_backends import agreement, backend_lines, decisions, dedup_with, selection_agreement

RESULTS = Path(__file__).parent / "results"
WEEK = "2026-10-05"  # the generated week (benchmarks.corpus)

# "What a real scorer would cost": figures from the shared notes, not measured here.
H200_7B_PROMPTS_PER_S = 220.0  # LLaMA-7B shape, plain transformers, bf16, one H200 (notes/kto-trainer.md)
H200_SOURCE_TOKENS = 160  # tokens per DEITA prompt in that measurement
SCORER_13B_FACTOR = 2.0  # DEITA's scorers are LLaMA-13B fine-tunes: about 2x the 7B cost
CHARS_PER_TOKEN = 4.0  # assumed for LLaMA's tokenizer on English text (not measured)
CPU_05B_HOURS_PER_100K = 78.0  # notes/curation.md §4: two 0.5B scorers on this 2-core CPU
CPU_13B_FACTOR = 26.0  # notes/curation.md §4: 13B vs 0.5B


class MemorySampler:
    """Resident memory of this process and its children, sampled every 20 ms."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._proc = psutil.Process()

    def _rss(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._rss()))
            time.sleep(0.02)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_above_start(self, start: float, end: float) -> int:
        window = [rss for t, rss in self.samples if start <= t <= end]
        before = [rss for t, rss in self.samples if t <= start]
        base = before[-1] if before else (window[0] if window else 0)
        return max(0, max(window, default=base) - base)


@dataclass
class Stage:
    name: str
    rows: int
    seconds: float
    peak_mib: float
    baseline: dict | None = None
    notes: dict = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


@contextmanager
def timed(sampler: MemorySampler, out: dict):
    start = time.perf_counter()
    yield
    end = time.perf_counter()
    out.update(seconds=end - start, peak_mib=sampler.peak_above_start(start, end) / 2**20)


def presidio_default(rows, sampler: MemorySampler) -> dict:
    """Presidio's default path with the same models as ours: the default recognizer registry,
    the same spaCy NER pipeline and Rampart's recognizer, one process, every text on its own."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from kto_pipeline.curate.redaction import RedactionConfig, installed_spacy_model, offline_tldextract
    from kto_pipeline.curate.redaction.rampart import rampart_recognizer

    offline_tldextract()
    model = installed_spacy_model(RedactionConfig())
    nlp = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    rampart = rampart_recognizer()
    if rampart is not None:
        analyzer.registry.add_recognizer(rampart)
    anonymizer = AnonymizerEngine()
    out: dict = {}
    with timed(sampler, out):
        for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True):
            for text in (prompt, completion):
                anonymizer.anonymize(text=text, analyzer_results=analyzer.analyze(text, language="en"))
    return {"rows": len(rows), **out, "rows_per_s": len(rows) / out["seconds"]}


def datasketch_default(rows, sampler: MemorySampler, config) -> dict:
    """datasketch's default path: MinHash.update per shingle (sha1), then MinHashLSH inserts."""
    from datasketch import MinHash, MinHashLSH

    from kto_pipeline.curate.dedup import shingles

    out: dict = {}
    with timed(sampler, out):
        lsh = MinHashLSH(threshold=config.minhash_threshold, num_perm=config.num_perm)
        for i, (prompt, completion) in enumerate(zip(rows["prompt"], rows["completion"], strict=True)):
            m = MinHash(num_perm=config.num_perm)
            for sh in shingles(prompt, config.shingle_size) + shingles(completion, config.shingle_size):
                m.update(sh.encode("utf-8"))
            lsh.insert(str(i), m)
    return {"rows": len(rows), **out, "rows_per_s": len(rows) / out["seconds"]}


def sentence_transformers_default(rows, sampler: MemorySampler) -> dict:
    """sentence-transformers' default `encode` (batch 32, the model's own length limit)."""
    from sentence_transformers import SentenceTransformer

    from kto_pipeline.curate.embeddings import bundled_model_path

    model = SentenceTransformer(bundled_model_path(), device="cpu")
    texts = list(rows["prompt"]) + list(rows["completion"])
    out: dict = {}
    with timed(sampler, out):
        model.encode(texts)
    return {
        "rows": len(rows),
        "texts": len(texts),
        **out,
        "rows_per_s": len(rows) / out["seconds"],
        "max_seq_length": model.max_seq_length,
    }


def transformers_plain_scoring(rows, model_path: Path, sampler: MemorySampler) -> dict:
    """transformers' plain path: each row's two DEITA prompts, one forward each (batch 1, full
    logits, no dedupe of repeated prompts), the score read from the last position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kto_pipeline.curate.deita import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE, digit_token_ids, expected_score

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    digits = [group[0] for group in digit_token_ids(tok)]
    complexity, quality = [], []
    out: dict = {}
    with timed(sampler, out), torch.inference_mode():
        for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True):
            for text, sink in (
                (COMPLEXITY_TEMPLATE.format(instruction=prompt), complexity),
                (QUALITY_TEMPLATE.format(instruction=prompt, output=completion), quality),
            ):
                logits = model(**tok(text, return_tensors="pt")).logits[0, -1, digits]
                sink.append(float(expected_score(logits.double().numpy()[None, :])[0]))
    return {
        "rows": len(rows),
        "prompts": 2 * len(rows),
        **out,
        "rows_per_s": len(rows) / out["seconds"],
        "complexity": complexity,
        "quality": quality,
    }


def greedy_loop(
    rows: pd.DataFrame, scores: pd.DataFrame, embeddings: np.ndarray, threshold: float, sampler: MemorySampler
) -> dict:
    """A straightforward DEITA repr filter: per label class, rows by evol score (ties by row_id),
    one row at a time against the kept set (one numpy matrix-vector product per row)."""
    out: dict = {}
    kept_ids: list[str] = []
    with timed(sampler, out):
        row_ids = rows["row_id"].astype(str).to_numpy()
        labels = rows["label"].to_numpy(dtype=bool)
        evol = scores["evol_score"].to_numpy(dtype=np.float64)
        rank = np.empty(len(rows), dtype=np.int64)
        rank[np.argsort(row_ids, kind="stable")] = np.arange(len(rows))
        priority = np.lexsort((rank, -evol))
        emb = np.asarray(embeddings, dtype=np.float32)
        for cls in (True, False):
            order = priority[labels[priority] == cls]
            kept = np.empty((len(order), emb.shape[1]), dtype=np.float32)
            k = 0
            for i in order:
                v = emb[i]
                if k and float((kept[:k] @ v).max()) > threshold:
                    continue
                kept[k] = v
                k += 1
                kept_ids.append(row_ids[i])
    return {"rows": len(rows), **out, "rows_per_s": len(rows) / out["seconds"], "kept_ids": kept_ids}


def _stage_dict(stage: Stage) -> dict:
    return {**stage.__dict__, "rows_per_s": stage.rows_per_s}


def redact_and_dedup(
    n: int, args: argparse.Namespace, sampler: MemorySampler
) -> tuple[dict, pd.DataFrame, np.ndarray, dict]:
    """Redaction and deduplication of one week, with their baselines, and the same dedup with
    every other embedder backend (agreement with torch's fp32 decisions). Returns the week's
    figures, the kept rows, their vectors and each backend's vectors by row_id."""
    from kto_pipeline.curate.redaction import RedactionConfig, redact

    baseline_rows = args.baseline_rows
    rows = make_rows(n, seed=7)
    print(
        f"\n== {n} rows (mean prompt {rows['prompt'].str.len().mean():.0f} chars, completion {rows['completion'].str.len().mean():.0f})",
        flush=True,
    )
    stages: list[Stage] = []
    week_start = time.perf_counter()

    if args.skip_redaction:
        redacted_rows = rows
    else:
        red: dict = {}
        redaction_config = RedactionConfig()
        with timed(sampler, red):
            redacted = redact(rows, redaction_config)
        redacted_rows = redacted.rows
        stages.append(
            Stage(
                "redaction",
                n,
                red["seconds"],
                red["peak_mib"],
                notes={"entities": sum(redacted.entities_found.values())},
            )
        )
        print(f"redaction: {n / red['seconds']:.0f} rows/s", flush=True)

    dedup_start = time.perf_counter()
    result, embedder, vectors, load_s = dedup_with(redacted_rows, args.embedder_backend, args.embedder_cache)
    week_seconds = time.perf_counter() - week_start
    for name, start, end in result.info["stages"]:
        count = result.info["rows_embedded"] if name in ("embedding", "semdedup") else n
        stages.append(Stage(name, count, end - start, sampler.peak_above_start(start, end) / 2**20))
    by_name = {s.name: s for s in stages}
    by_name["embedding"].notes = {"backend": args.embedder_backend, "load_seconds": load_s}
    for stage in stages:
        print(f"{stage.name}: {stage.rows_per_s:.0f} rows/s over {stage.rows} rows", flush=True)

    # MinHash signatures alone (the stage above also fills and queries the LSH index).
    from kto_pipeline.curate.dedup import row_signatures

    t = time.perf_counter()
    row_signatures(redacted_rows["prompt"].astype(str).tolist(), redacted_rows["completion"].astype(str).tolist())
    by_name["minhash"].notes = {"signatures_rows_per_s": n / (time.perf_counter() - t)}
    print(f"minhash signatures alone: {by_name['minhash'].notes['signatures_rows_per_s']:.0f} rows/s", flush=True)

    # The same week with the other embedder backends: their speed, and how many of SemDeDup's
    # decisions they change against torch's fp32 model (the reference).
    backends = {args.embedder_backend: (result, embedder, vectors, by_name["embedding"].seconds)}
    for backend in args.compare_backends if n <= args.compare_upto else ():
        if backend in backends:
            continue
        print(f"dedup again with the {backend} embedder …", flush=True)
        other, emb_other, vec_other, _ = dedup_with(redacted_rows, backend, args.embedder_cache)
        seconds = next(end - start for name, start, end in other.info["stages"] if name == "embedding")
        backends[backend] = (other, emb_other, vec_other, seconds)
    reference = backends.get("torch")
    backend_notes = {}
    for backend, (res, emb, _, seconds) in backends.items():
        note = {
            "embedder": emb.name,
            "onnx_file": str(emb.onnx_path) if emb.onnx_path else None,
            "rows": res.info["rows_embedded"],
            "seconds": seconds,
            "rows_per_s": res.info["rows_embedded"] / seconds,
            "counts": res.counts,
        }
        if reference is not None:
            note["semdedup_agreement"] = agreement(decisions(reference[0]), decisions(res), "semantic_duplicate")
            note["speedup_vs_torch"] = reference[3] / seconds
        backend_notes[backend] = note
        print(
            f"embedder {backend}: {note['rows_per_s']:.1f} rows/s"
            + (
                f", {note['speedup_vs_torch']:.2f}x torch; SemDeDup same decision {note['semdedup_agreement']['same_decision']:.2%}"
                if reference is not None
                else ""
            ),
            flush=True,
        )

    sample = rows.head(min(baseline_rows, n))
    print(f"baselines on {len(sample)} rows …", flush=True)
    if not args.skip_redaction:
        by_name["redaction"].baseline = presidio_default(sample, sampler)
    by_name["minhash"].baseline = datasketch_default(sample, sampler, _dedup_config())
    by_name["embedding"].baseline = sentence_transformers_default(sample.head(min(len(sample), 1000)), sampler)
    for s in stages:
        if s.baseline:
            print(
                f"{s.name}: {s.rows_per_s:.0f} rows/s vs default {s.baseline['rows_per_s']:.0f} rows/s ({s.rows_per_s / s.baseline['rows_per_s']:.1f}x)",
                flush=True,
            )
    week = {
        "rows": n,
        "week_seconds": week_seconds,
        "dedup_seconds": week_seconds - (dedup_start - week_start),
        "redaction_skipped": bool(args.skip_redaction),
        "week_peak_mib": sampler.peak_above_start(week_start, week_start + week_seconds) / 2**20,
        "counts": result.counts,
        "rows_embedded": result.info["rows_embedded"],
        "embedding_model": embedder.name,
        "embedding_device": embedder.device,
        "embedder_backends": backend_notes,
        "stages": [_stage_dict(s) for s in stages],
    }
    kept_ids = result.kept["row_id"].astype(str)
    per_backend = {b: np.stack([v[2][r] for r in kept_ids]) for b, v in backends.items()}
    return week, result.kept, result.kept_embeddings, per_backend


def _dedup_config():
    from kto_pipeline.curate.dedup import DedupConfig

    return DedupConfig()


def _distinct(rows: pd.DataFrame) -> tuple[int, int, float, float]:
    """Distinct prompts and (prompt, completion) pairs, and their mean rendered length in chars."""
    from kto_pipeline.curate.deita import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE

    prompts = set(rows["prompt"].astype(str))
    pairs = set(zip(rows["prompt"].astype(str), rows["completion"].astype(str)))
    cx_chars = len(COMPLEXITY_TEMPLATE) - len("{instruction}") + (sum(map(len, prompts)) / max(1, len(prompts)))
    q_chars = (
        len(QUALITY_TEMPLATE)
        - len("{instruction}{output}")
        + (sum(len(p) + len(c) for p, c in pairs) / max(1, len(pairs)))
    )
    return len(prompts), len(pairs), cx_chars, q_chars


def score_select_balance(
    kept: pd.DataFrame,
    embeddings: np.ndarray,
    backend,
    scorer_load_s: float,
    args: argparse.Namespace,
    sampler: MemorySampler,
) -> dict:
    """DEITA scoring (all rows, or a sample and an extrapolation), DEITA's selection and the KTO
    balance on all of the week's deduplicated rows, with the scoring and selection baselines."""
    from kto_pipeline.curate.balance import BalanceConfig, balance
    from kto_pipeline.curate.deita import SCORE_COLUMNS, DeitaScorer
    from kto_pipeline.curate.select import SelectionConfig, select_diverse

    n = len(kept)
    stages: list[Stage] = []
    sampled = n > args.score_all_upto
    target = kept.head(args.score_sample) if sampled else kept

    # (a) DEITA scoring. Each backend call is timed: the first scores the distinct prompts
    # (complexity), the second the distinct (prompt, completion) pairs (quality).
    calls: list[tuple[int, float]] = []
    inner = backend.score

    def timed_score(prompts):
        t = time.perf_counter()
        values = inner(prompts)
        calls.append((len(prompts), time.perf_counter() - t))
        return values

    scorer = DeitaScorer(backend, backend)
    sc: dict = {}
    backend.score = timed_score
    try:
        with timed(sampler, sc):
            scored = scorer.score(target)
    finally:
        del backend.score
    (n_cx, t_cx), (n_q, t_q) = calls
    week_prompts, week_pairs, cx_chars, q_chars = _distinct(kept)
    other = max(0.0, sc["seconds"] - t_cx - t_q)  # rendering, truncation checks, dedupe of prompts
    week_scoring_s = (
        (t_cx / max(1, n_cx) * week_prompts + t_q / max(1, n_q) * week_pairs + other * n / max(1, len(target)))
        if sampled
        else sc["seconds"]
    )
    evol = scored.scores["evol_score"]
    score_notes = {
        "sampled": sampled,
        "week_rows": n,
        "scored_rows": len(target),
        "distinct_prompts": scored.info["unique_prompts"],
        "distinct_pairs": scored.info["unique_pairs"],
        "complexity_seconds": t_cx,
        "quality_seconds": t_q,
        "other_seconds": other,
        "week_distinct_prompts": week_prompts,
        "week_distinct_pairs": week_pairs,
        "week_scored_prompts_per_row": (week_prompts + week_pairs) / max(1, n),
        "week_mean_prompt_chars": (cx_chars * week_prompts + q_chars * week_pairs) / max(1, week_prompts + week_pairs),
        "week_scoring_seconds": week_scoring_s,
        "week_scoring_estimated": sampled,
        "truncated": scored.info["complexity_stats"]["truncated"] + scored.info["quality_stats"]["truncated"],
        "evol_mean": float(evol.mean()),
        "evol_std": float(evol.std()),
        "scorer_load_seconds": scorer_load_s,
        "batch_size": backend.batch_size,
        "max_length": backend.max_length,
    }
    scoring = Stage("scoring", len(target), sc["seconds"], sc["peak_mib"], notes=score_notes)
    stages.append(scoring)
    label = (
        f"{len(target)} of {n} rows (sample; week ≈{week_scoring_s / 60:.1f} min extrapolated)"
        if sampled
        else f"{n} rows"
    )
    print(
        f"scoring: {scoring.rows_per_s:.1f} rows/s over {label}; {score_notes['distinct_prompts']} prompts + {score_notes['distinct_pairs']} pairs",
        flush=True,
    )

    if sampled:
        # Stand-ins for the unscored rows, drawn (seeded) from the scored rows: the tiny
        # scorer's scores are noise anyway, and selection and balance need every row scored.
        pick = np.random.default_rng(0).integers(0, len(target), n - len(target))
        rest = scored.scores[list(SCORE_COLUMNS)].iloc[pick]
        scores = pd.concat([scored.scores[list(SCORE_COLUMNS)], rest], ignore_index=True)
    else:
        scores = scored.scores[list(SCORE_COLUMNS)].reset_index(drop=True)
    scores.insert(0, "row_id", kept["row_id"].astype(str).to_numpy())

    # (b) DEITA's diversity-aware selection on the SemDeDup vectors, every row.
    selection_config = SelectionConfig()  # threshold 0.9, no budget, no floor: the asset's defaults
    se: dict = {}
    with timed(sampler, se):
        selection = select_diverse(kept, scores, embeddings, selection_config)
    stages.append(
        Stage(
            "selection",
            n,
            se["seconds"],
            se["peak_mib"],
            notes={
                "counts": selection.counts,
                "classes": selection.info["classes"],
                "threshold": selection_config.threshold,
            },
        )
    )
    print(f"selection: {n / se['seconds']:.0f} rows/s, kept {selection.counts['kept']} of {n}", flush=True)
    sel_agreement = selection_agreement(kept, scores, args.per_backend, (selection_config.threshold, 0.7))
    for b, by_t in sel_agreement.items():
        print(
            f"selection with {b} vectors: " + ", ".join(f"t={t} same {v['same_decision']:.2%}" for t, v in by_t.items())
        )

    # (c) KTO class balance of the selected rows.
    ba: dict = {}
    with timed(sampler, ba):
        balanced = balance(selection.kept, BalanceConfig(), week=WEEK)
    w = balanced.weights
    stages.append(
        Stage(
            "balance",
            len(selection.kept),
            ba["seconds"],
            ba["peak_mib"],
            notes={
                "counts": balanced.counts,
                "desirable_weight": w.desirable,
                "undesirable_weight": w.undesirable,
                "weighted_ratio": w.ratio,
                "in_range": w.in_range,
            },
        )
    )
    print(f"balance: {len(selection.kept) / ba['seconds']:.0f} rows/s; {balanced.counts}", flush=True)

    # Baselines: scoring and selection on samples of the same week, ours rerun on the same sample.
    sample = kept.head(min(args.score_baseline_rows, n))
    print(f"scoring baseline on {len(sample)} rows …", flush=True)
    base = transformers_plain_scoring(sample, Path(backend.model_ref), sampler)
    ours: dict = {}
    with timed(sampler, ours):
        same = scorer.score(sample).scores
    diff = max(
        float(np.max(np.abs(same["complexity"].to_numpy() - np.array(base.pop("complexity"))), initial=0.0)),
        float(np.max(np.abs(same["quality"].to_numpy() - np.array(base.pop("quality"))), initial=0.0)),
    )
    scoring.baseline = {
        **base,
        "ours_seconds": ours["seconds"],
        "ours_rows_per_s": len(sample) / ours["seconds"],
        "max_abs_score_diff": diff,
    }

    m = min(args.selection_baseline_rows, n)
    print(f"selection baseline on {m} rows …", flush=True)
    sub_rows, sub_scores, sub_emb = kept.head(m), scores.head(m), embeddings[:m]
    loop = greedy_loop(sub_rows, sub_scores, sub_emb, selection_config.threshold, sampler)
    ours = {}
    with timed(sampler, ours):
        sub_sel = select_diverse(sub_rows, sub_scores, sub_emb, selection_config)
    same_keep = set(loop.pop("kept_ids")) == set(sub_sel.kept["row_id"].astype(str))
    stages[1].baseline = {
        **loop,
        "ours_seconds": ours["seconds"],
        "ours_rows_per_s": m / ours["seconds"],
        "same_rows_kept": same_keep,
    }
    for s in stages:
        if s.baseline:
            b = s.baseline
            print(
                f"{s.name}: {b['ours_rows_per_s']:.1f} rows/s vs baseline {b['rows_per_s']:.1f} rows/s on {b['rows']} rows ({b['ours_rows_per_s'] / b['rows_per_s']:.1f}x)",
                flush=True,
            )

    return {
        "scored_rows": len(target),
        "selected": selection.counts,
        "balanced": balanced.counts,
        "weights": {"desirable": w.desirable, "undesirable": w.undesirable, "ratio": w.ratio, "in_range": w.in_range},
        "new_stages": [_stage_dict(s) for s in stages],
        "selection_agreement": sel_agreement,
    }


def run_week(n: int, args: argparse.Namespace, sampler: MemorySampler, scorer_path: Path) -> dict:
    from kto_pipeline.curate.deita import TransformersScoreBackend

    load_start = os.getloadavg()

    cache = Path(args.dedup_cache) / f"week-{n}-seed7.pkl" if args.dedup_cache else None
    if cache is not None and cache.exists():
        saved = pickle.loads(cache.read_bytes())
        week, kept, embeddings = saved["week"], saved["kept"], saved["kept_embeddings"]
        per_backend = saved.get("per_backend", {})
        week["redaction_dedup_from_cache"] = saved["date"]
        print(f"\n== {n} rows: redaction + dedup figures and output from {cache} (run {saved['date']})", flush=True)
    else:
        week, kept, embeddings, per_backend = redact_and_dedup(n, args, sampler)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(
                pickle.dumps(
                    {
                        "week": week,
                        "kept": kept,
                        "kept_embeddings": embeddings,
                        "per_backend": per_backend,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    }
                )
            )

    t = time.perf_counter()
    backend = TransformersScoreBackend(
        scorer_path, device="cpu", dtype="float32", batch_size=args.score_batch_size, max_length=1024
    )
    backend.score(["warm up"])  # loads the tokenizer and the model
    load_s = time.perf_counter() - t
    args.per_backend = per_backend
    new = score_select_balance(kept, embeddings, backend, load_s, args, sampler)
    week["stages"] = week["stages"] + new.pop("new_stages")
    week.update(new)
    by = {s["name"]: s for s in week["stages"]}
    after_dedup = load_s + by["selection"]["seconds"] + by["balance"]["seconds"]
    week["path_seconds_as_run"] = week["week_seconds"] + after_dedup + by["scoring"]["seconds"]
    week["path_seconds"] = week["week_seconds"] + after_dedup + by["scoring"]["notes"]["week_scoring_seconds"]
    week["path_scoring_estimated"] = by["scoring"]["notes"]["week_scoring_estimated"]
    week["load_average"] = {"start": load_start, "end": os.getloadavg()}
    print(
        f"raw → balanced: {week['path_seconds'] / 60:.1f} min"
        + (" (scoring extrapolated)" if week["path_scoring_estimated"] else ""),
        flush=True,
    )
    return week


def _rate(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _fmt_rows(s: dict) -> str:
    notes = s.get("notes") or {}
    if s["name"] == "scoring" and notes.get("sampled"):
        return f"{s['rows']:,} of {notes['week_rows']:,}"
    return f"{s['rows']:,}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def _real_scorer_section(report: dict) -> list[str]:
    week = report["weeks"][-1]
    notes = next(s for s in week["stages"] if s["name"] == "scoring")["notes"]
    kept_share = week["counts"]["kept"] / week["counts"]["rows_in"]
    per_kept = notes["week_scored_prompts_per_row"]
    per_raw = per_kept * kept_share
    tokens = notes["week_mean_prompt_chars"] / CHARS_PER_TOKEN
    rate_7b = H200_7B_PROMPTS_PER_S * H200_SOURCE_TOKENS / tokens
    rate_13b = rate_7b / SCORER_13B_FACTOR
    lines = [
        "## What a real scorer would cost (estimates, not measured here)",
        "",
        "The figures above come from a tiny random scorer. DEITA's real scorers",
        "(hkust-nlp/deita-complexity-scorer and -quality-scorer) are LLaMA-13B fine-tunes. Sources and assumptions:",
        "",
        f"- one H200, plain transformers, bf16: a LLaMA-7B-shaped scorer prefills about {H200_7B_PROMPTS_PER_S:.0f} DEITA prompts",
        f"  of {H200_SOURCE_TOKENS} tokens per second (shared notes, kto-trainer.md, last section); a 13B scorer costs about",
        f"  {SCORER_13B_FACTOR:.0f}× the 7B one (estimate);",
        f"- prompts per row: two per row (complexity + quality) minus repeated prompts. Measured on the {week['rows']:,}-row week:",
        f"  dedup keeps {kept_share:.1%} of the raw rows, and each kept row needs {per_kept:.3f} distinct prompts, so a raw row costs {per_raw:.3f};",
        f"- prompt length: the rendered prompts average {notes['week_mean_prompt_chars']:.0f} characters, ≈{tokens:.0f} LLaMA tokens at an assumed",
        f"  {CHARS_PER_TOKEN:.0f} characters per token; the prefill rate is scaled by {H200_SOURCE_TOKENS}/{tokens:.0f} (prefill is about linear in",
        f"  tokens at this length), giving ≈{rate_7b:.0f} prompts/s for 7B and ≈{rate_13b:.0f} prompts/s for 13B on one H200.",
        "",
        "| raw rows / week | scored prompts | 7B-shaped, 1 H200 | 13B (DEITA's scorers), 1 H200 |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for rows in (10_000, 100_000, 1_000_000):
        prompts = rows * per_raw
        lines.append(f"| {rows:,} | {prompts:,.0f} | {_hours(prompts / rate_7b)} | {_hours(prompts / rate_13b)} |")
    lines += [
        "",
        "For comparison, the CPU: the shared notes (curation.md §4) put two 0.5B scorers on this 2-core machine at",
        f"≈{CPU_05B_HOURS_PER_100K:.0f} h per 100k records and a 13B at ≈{CPU_13B_FACTOR:.0f}× that, so DEITA scoring is a GPU job.",
        "",
        "The path for real weeks is vLLM serving the two scorers behind its OpenAI-compatible API with prefill-only",
        "requests (one token, top-20 logprobs; `OpenAIScoreBackend`, `deita_scorer.backend = openai`): continuous",
        "batching should beat the plain transformers figure above, but there is no measured vLLM figure here (vLLM is",
        "not installed on these machines).",
        "",
    ]
    return lines


def _backend_of(week: dict) -> str:
    tail = week["embedding_model"].rsplit("|", 1)[-1]
    return tail if tail.startswith("backend=") else "backend=torch"


def _load(values) -> str:
    return "n/a" if not values else " / ".join(f"{v:.2f}" for v in values)


def _markdown(report: dict) -> str:
    lines = [
        "# Curation benchmark",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}  ",
        "Load average (1, 5, 15 min): "
        + f"{_load(report.get('load_average_start'))} at the start, {_load(report.get('load_average_end'))} at the end",
        "",
        *([f"**Note:** {report['note']}", ""] if report.get("note") else []),
        "Rows/s per stage of one generated week (≈300-character prompts and completions, 15% of texts",
        "with PII, 5% exact, 5% near and 3% paraphrased duplicates, 8% of thumbs-down edited), from the",
        "raw rows to the balanced training rows. The default path of each library (for selection, a plain",
        "one-row-at-a-time loop) runs on a sample of the same week in the same process; the ratio is",
        "ours / default. Redaction, MinHash and embedding compare our rows/s on the whole week with the",
        "default's on its sample; scoring and selection rerun ours on the baseline's sample and compare",
        "the two there (selection's cost grows with the kept set, so only the same sample is like for",
        "like). Peak memory is resident memory above the stage's start, workers included.",
        "",
        "DEITA scoring runs a tiny random Llama (byte-level BPE, ≈0.1M parameters) on the CPU through the",
        "real code path (`TransformersScoreBackend`, `DeitaScorer`): its speed and its nonsense scores say",
        "nothing about a real scorer (see the last section). Balance has no baseline: it is a sort, one hash",
        "per record, a shuffle and two counts, with no library default to compare with.",
        "",
    ]
    for week in report["weeks"]:
        by = {s["name"]: s for s in week["stages"]}
        sn = by["scoring"]["notes"]
        est = " (scoring extrapolated)" if week["path_scoring_estimated"] else ""
        first = "dedup (redaction not run)" if week.get("redaction_skipped") else "redaction + dedup"
        lines += [
            f"## {week['rows']:,} rows: raw → balanced {week['path_seconds'] / 60:.1f} min{est}; {first} {week['week_seconds'] / 60:.1f} min, peak +{week['week_peak_mib']:.0f} MiB",
            "",
        ]
        if week.get("load_average"):
            la = week["load_average"]
            lines += [f"Load average during this week: {_load(la['start'])} → {_load(la['end'])}.", ""]
        if week.get("redaction_dedup_from_cache"):
            lines += [
                f"Redaction and dedup figures (and their output) reused from a run of {week['redaction_dedup_from_cache']}.",
                "",
            ]
        lines += [
            "| stage | rows | rows/s | peak MiB | default path rows/s | ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in week["stages"]:
            base = s.get("baseline")
            if base and "ours_rows_per_s" in base:
                ratio = f"{base['ours_rows_per_s'] / base['rows_per_s']:.1f}×"
                base_txt = f"{_rate(base['rows_per_s'])} (on {base['rows']:,}; ours {_rate(base['ours_rows_per_s'])} on the same)"
            elif base:
                ratio = f"{s['rows_per_s'] / base['rows_per_s']:.1f}×"
                base_txt = f"{base['rows_per_s']:.0f} (on {base['rows']:,})"
            else:
                ratio = base_txt = ""
            lines.append(
                f"| {s['name']} | {_fmt_rows(s)} | {_rate(s['rows_per_s'])} | {s['peak_mib']:.0f} | {base_txt} | {ratio} |"
            )
        sig = (by["minhash"].get("notes") or {}).get("signatures_rows_per_s")
        if sig:
            lines += [
                "",
                f"MinHash signatures alone (prompt and completion, every row): {sig:,.0f} rows/s; the minhash row adds "
                "datasketch's MinHashLSH (filled in bulk) and the verification of its candidates.",
            ]
        lines += backend_lines(week)
        kept = week["counts"]
        drops = {k: v for k, v in kept.items() if k not in ("rows_in", "kept") and v}
        lines += [
            "",
            f"Kept {kept['kept']:,} of {kept['rows_in']:,}; dropped {drops}. Embedded {week['rows_embedded']:,} rows with {week['embedding_model']} on {week['embedding_device']}.",
            "",
        ]
        sb = by["scoring"].get("baseline") or {}
        scoring_txt = (
            f"Scoring: {sn['distinct_prompts']:,} distinct prompts (complexity, {sn['complexity_seconds']:.1f} s) and {sn['distinct_pairs']:,} distinct pairs "
            f"(quality, {sn['quality_seconds']:.1f} s) for {sn['scored_rows']:,} rows, batch {sn['batch_size']}, max_length {sn['max_length']}, "
            f"{sn['truncated']} truncated; scorer load {sn['scorer_load_seconds']:.1f} s (in the path time). "
        )
        if sn["sampled"]:
            scoring_txt += (
                f"Only the first {sn['scored_rows']:,} of the {sn['week_rows']:,} deduplicated rows were scored; the whole week "
                f"({sn['week_distinct_prompts']:,} prompts + {sn['week_distinct_pairs']:,} pairs) is **extrapolated** from the measured seconds per "
                f"prompt of each kind at ≈{sn['week_scoring_seconds'] / 60:.1f} min, and that estimate is in the raw → balanced time. The other rows got "
                "stand-in scores drawn (seeded) from the scored rows, so selection and balance ran on every row. "
            )
        else:
            scoring_txt += "Every deduplicated row was scored. "
        scoring_txt += (
            f"Scores are noise (random weights): evol mean {sn['evol_mean']:.2f}, std {sn['evol_std']:.3f}. "
            f"Baseline: transformers, batch 1, two forwards per row, no dedupe of repeated prompts; its scores match ours within {sb.get('max_abs_score_diff', float('nan')):.1e}."
        )
        sel = by["selection"]
        sc = sel["notes"]["counts"]
        sbl = sel.get("baseline") or {}
        bal = by["balance"]["notes"]
        bc = bal["counts"]
        lines += [
            scoring_txt,
            "",
            f"Selection: threshold {sel['notes']['threshold']}, per label class, no budget, no score floor (the asset's defaults); kept "
            f"{sc['kept']:,} of {sc['rows_in']:,} (diversity {sc['diversity']:,}: SemDeDup already removed the rows this close, so the kept set "
            "grows to about the whole class, the pass's worst case). The plain loop kept "
            f"{'the same rows' if sbl.get('same_rows_kept') else 'different rows'} on its sample.",
            "",
            f"Balance: {bc['train']:,} training rows ({bc['train_desirable']:,} desirable, {bc['train_undesirable']:,} undesirable), {bc['eval']:,} held out, "
            f"{bc['dropped']:,} downsampled; λD = {bal['desirable_weight']:g}, λU = {bal['undesirable_weight']:g}, λD·nD/(λU·nU) = {bal['weighted_ratio']:.3f} "
            f"({'in' if bal['in_range'] else 'outside'} [1, 4/3]).",
            "",
            f"Raw → balanced as run: {week['path_seconds_as_run'] / 60:.1f} min"
            + (
                f" (scoring only the {sn['scored_rows']:,}-row sample); with the week's scoring extrapolated: {week['path_seconds'] / 60:.1f} min."
                if sn["sampled"]
                else "."
            ),
            "",
        ]
    if len(report["weeks"]) > 1:
        a, b = report["weeks"][0], report["weeks"][-1]
        growth = (b["week_seconds"] / a["week_seconds"]) / (b["rows"] / a["rows"])
        if a["embedding_model"] != b["embedding_model"]:
            lines += [
                f"The two weeks were embedded differently ({_backend_of(a)} vs {_backend_of(b)}), so the growth "
                "below is not like for like.",
                "",
            ]
        lines += [
            f"Cost growth {a['rows']:,} → {b['rows']:,} rows ({'dedup' if b.get('redaction_skipped') else 'redaction + dedup'}): {b['week_seconds'] / a['week_seconds']:.1f}× the time for {b['rows'] / a['rows']:.0f}× the rows ({growth:.2f}× per row).",
            "",
        ]
        g2 = (b["path_seconds"] / a["path_seconds"]) / (b["rows"] / a["rows"])
        lines += [
            f"Raw → balanced: {b['path_seconds'] / a['path_seconds']:.1f}× the time for {b['rows'] / a['rows']:.0f}× the rows ({g2:.2f}× per row; scoring extrapolated where sampled).",
            "",
        ]
    lines += _real_scorer_section(report)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--baseline-rows", type=int, default=3000, help="rows each redaction/dedup default path runs on"
    )
    parser.add_argument(
        "--score-all-upto", type=int, default=5000, help="score every deduplicated row of weeks up to this many rows"
    )
    parser.add_argument(
        "--score-sample", type=int, default=2000, help="rows scored (then extrapolated) in larger weeks"
    )
    parser.add_argument("--score-batch-size", type=int, default=8, help="the scorer's batch (the resource's default)")
    parser.add_argument(
        "--score-baseline-rows", type=int, default=300, help="rows the batch-1 transformers scoring baseline runs on"
    )
    parser.add_argument(
        "--selection-baseline-rows", type=int, default=20_000, help="rows the one-row-at-a-time selection loop runs on"
    )
    parser.add_argument(
        "--scorer-dir",
        default=str(Path(tempfile.gettempdir()) / "kto_pipeline_bench" / "tiny-scorer"),
        help="where the tiny scorer is built (once; reused when present)",
    )
    parser.add_argument(
        "--dedup-cache", default=None, help="folder to save each week's dedup output in, and reuse it from when present"
    )
    parser.add_argument(
        "--embedder-backend", default=None, help="the dedup embedder's backend (default: EmbedderConfig's)"
    )
    parser.add_argument(
        "--compare-backends",
        nargs="*",
        default=["torch", "onnx", "onnx-int8"],
        help="backends the week is also deduplicated with, for their speed and agreement with torch",
    )
    parser.add_argument(
        "--compare-upto",
        type=int,
        default=10**9,
        help="weeks up to this many rows are also deduplicated with --compare-backends (torch is slow at 100k)",
    )
    parser.add_argument("--embedder-cache", default=None, help="where exported ONNX graphs are cached")
    parser.add_argument(
        "--skip-redaction", action="store_true", help="dedup the raw rows (redaction is benchmarked on its own)"
    )
    parser.add_argument("--note", default=None, help="a note printed at the top of the report")
    parser.add_argument("--out", default=str(RESULTS / "curation"))
    args = parser.parse_args(argv)
    if args.embedder_backend is None:
        from kto_pipeline.curate.embeddings import EmbedderConfig

        args.embedder_backend = EmbedderConfig.backend
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch

    from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm

    report = {
        "command": " ".join([".venv/bin/python -m benchmarks.curation", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, cuda={torch.cuda.is_available()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "weeks": [],
        "load_average_start": os.getloadavg(),
        **({"note": args.note} if args.note else {}),
    }
    started = time.perf_counter()
    scorer_path = build_tiny_causal_lm(args.scorer_dir)
    report["scorer"] = {
        "path": str(scorer_path),
        "build": "kto_pipeline.devtools.tiny_models.build_tiny_causal_lm (TinyModelSpec defaults)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with MemorySampler() as sampler:
        for n in args.sizes:
            report["weeks"].append(run_week(n, args, sampler, scorer_path))
            # Written after every week, so a long run that is stopped keeps its finished weeks.
            report["wall_seconds"] = time.perf_counter() - started
            report["load_average_end"] = os.getloadavg()
            out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
            out.with_suffix(".md").write_text(_markdown(report))
            print(
                f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({report['wall_seconds'] / 60:.1f} min so far)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
