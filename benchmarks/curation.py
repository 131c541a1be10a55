"""Curation benchmark: redaction and deduplication of a generated week, per stage, against
each library's default path in the same run.

    .venv/bin/python -m benchmarks.curation                 # 10k and 100k rows (about 30 min)
    .venv/bin/python -m benchmarks.curation --sizes 10000   # quicker

Writes benchmarks/results/curation.json and curation.md. Figures are rows per second and
peak resident memory (this process and its workers) above the stage's starting point.
Baselines run on a sample of the week (they are slow); rows/s compare like for like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.corpus import make_rows

RESULTS = Path(__file__).parent / "results"


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
    """Presidio's default path: the default recognizer registry, one process, every text on its own."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from kto_pipeline.redaction import _offline_tldextract

    _offline_tldextract()
    # No spaCy model can be downloaded here; the no_op engine keeps every pattern recognizer.
    nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
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

    from kto_pipeline.dedup import shingles

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

    from kto_pipeline.embeddings import bundled_model_path

    model = SentenceTransformer(bundled_model_path(), device="cpu")
    texts = list(rows["prompt"]) + list(rows["completion"])
    out: dict = {}
    with timed(sampler, out):
        model.encode(texts)
    return {"rows": len(rows), "texts": len(texts), **out, "rows_per_s": len(rows) / out["seconds"], "max_seq_length": model.max_seq_length}


def run_week(n: int, baseline_rows: int, sampler: MemorySampler) -> dict:
    from kto_pipeline.dedup import DedupConfig, deduplicate, embed_rows
    from kto_pipeline.embeddings import TextEmbedder
    from kto_pipeline.redaction import RedactionConfig, redact

    rows = make_rows(n, seed=7)
    print(f"\n== {n} rows (mean prompt {rows['prompt'].str.len().mean():.0f} chars, completion {rows['completion'].str.len().mean():.0f})", flush=True)
    stages: list[Stage] = []
    week_start = time.perf_counter()

    red: dict = {}
    redaction_config = RedactionConfig()
    with timed(sampler, red):
        redacted = redact(rows, redaction_config)
    stages.append(Stage("redaction", n, red["seconds"], red["peak_mib"], notes={"entities": sum(redacted.entities_found.values())}))
    print(f"redaction: {n / red['seconds']:.0f} rows/s", flush=True)

    embedder = TextEmbedder()
    embedder.embed(["warm up"])
    dedup_config = DedupConfig(embedding_model=embedder.name)
    embedded = {}

    def embed(frame):
        embedded["rows"] = len(frame)
        return embed_rows(frame, embedder.embed)

    result = deduplicate(redacted.rows, embed, None, dedup_config)
    week_seconds = time.perf_counter() - week_start
    for name, start, end in result.info["stages"]:
        count = embedded.get("rows", 0) if name in ("embedding", "semdedup") else n
        stages.append(Stage(name, count, end - start, sampler.peak_above_start(start, end) / 2**20))
    for stage in stages[1:]:
        print(f"{stage.name}: {stage.rows_per_s:.0f} rows/s over {stage.rows} rows", flush=True)

    sample = rows.head(min(baseline_rows, n))
    print(f"baselines on {len(sample)} rows …", flush=True)
    by_name = {s.name: s for s in stages}
    by_name["redaction"].baseline = presidio_default(sample, sampler)
    by_name["minhash"].baseline = datasketch_default(sample, sampler, dedup_config)
    by_name["embedding"].baseline = sentence_transformers_default(sample.head(min(len(sample), 1000)), sampler)
    for s in stages:
        if s.baseline:
            print(f"{s.name}: {s.rows_per_s:.0f} rows/s vs default {s.baseline['rows_per_s']:.0f} rows/s ({s.rows_per_s / s.baseline['rows_per_s']:.1f}x)", flush=True)
    return {
        "rows": n,
        "week_seconds": week_seconds,
        "week_peak_mib": sampler.peak_above_start(week_start, week_start + week_seconds) / 2**20,
        "counts": result.counts,
        "rows_embedded": embedded.get("rows", 0),
        "embedding_model": embedder.name,
        "embedding_device": embedder.device,
        "stages": [{**s.__dict__, "rows_per_s": s.rows_per_s} for s in stages],
    }


def _markdown(report: dict) -> str:
    lines = [
        "# Curation benchmark",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}",
        "",
        "Rows/s per stage of one generated week (≈300-character prompts and completions, 15% of texts",
        "with PII, 5% exact, 5% near and 3% paraphrased duplicates, 8% of thumbs-down edited). The",
        "default path of each library runs on a sample of the same week in the same process; the",
        "ratio is ours / default. Peak memory is resident memory above the stage's start, workers",
        "included.",
        "",
    ]
    for week in report["weeks"]:
        lines += [
            f"## {week['rows']:,} rows: whole week {week['week_seconds'] / 60:.1f} min, peak +{week['week_peak_mib']:.0f} MiB",
            "",
            "| stage | rows | rows/s | peak MiB | default path rows/s | ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in week["stages"]:
            base = s.get("baseline")
            ratio = f"{s['rows_per_s'] / base['rows_per_s']:.1f}×" if base else ""
            base_txt = f"{base['rows_per_s']:.0f} (on {base['rows']:,})" if base else ""
            lines.append(f"| {s['name']} | {s['rows']:,} | {s['rows_per_s']:,.0f} | {s['peak_mib']:.0f} | {base_txt} | {ratio} |")
        kept = week["counts"]
        drops = {k: v for k, v in kept.items() if k not in ("rows_in", "kept") and v}
        lines += ["", f"Kept {kept['kept']:,} of {kept['rows_in']:,}; dropped {drops}. Embedded {week['rows_embedded']:,} rows with {week['embedding_model']} on {week['embedding_device']}.", ""]
    if len(report["weeks"]) > 1:
        a, b = report["weeks"][0], report["weeks"][-1]
        growth = (b["week_seconds"] / a["week_seconds"]) / (b["rows"] / a["rows"])
        lines += [f"Cost growth {a['rows']:,} → {b['rows']:,} rows: {b['week_seconds'] / a['week_seconds']:.1f}× the time for {b['rows'] / a['rows']:.0f}× the rows ({growth:.2f}× per row).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--baseline-rows", type=int, default=3000, help="rows each default path runs on")
    parser.add_argument("--out", default=str(RESULTS / "curation"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch

    report = {
        "command": " ".join([".venv/bin/python -m benchmarks.curation", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB, cuda={torch.cuda.is_available()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "weeks": [],
    }
    with MemorySampler() as sampler:
        for n in args.sizes:
            report["weeks"].append(run_week(n, args.baseline_rows, sampler))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    out.with_suffix(".md").write_text(_markdown(report))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
