"""MinHash stage alone at several week sizes: signatures, then the whole stage (signatures,
datasketch's MinHashLSH filled in bulk, candidate verification), against datasketch's own
update loop (`MinHash.update` per shingle, `MinHashLSH.insert` per row) in the same run.

    .venv/bin/python -m benchmarks.minhash_scaling --sizes 10000 30000 100000

Writes benchmarks/results/curation_minhash.json and .md. Every run also checks, on a sample,
that the signatures equal datasketch's MinHash with the same permutations and hash function.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xxhash
from datasketch import MinHash

from benchmarks.corpus import make_rows
from benchmarks.curation import MemorySampler, datasketch_default

RESULTS = Path(__file__).parent / "results"


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(n: int, baseline_rows: int, repeats: int, sampler: MemorySampler) -> dict:
    from kto_pipeline.curate.dedup import DedupConfig, DedupHistory, row_signatures, shingles
    from kto_pipeline.curate.dedup.minhash import near_duplicates

    rows = make_rows(n, seed=7)
    prompts = rows["prompt"].astype(str).tolist()
    completions = rows["completion"].astype(str).tolist()
    config = DedupConfig()
    labels = rows["label"].to_numpy(dtype=bool)
    rank = np.arange(n)
    row_ids = np.array([str(r) for r in rows["row_id"]], dtype=object)
    history = DedupHistory.empty(config.num_perm, 0)
    load_start = os.getloadavg()

    sig_s = _best_of(lambda: row_signatures(prompts, completions), repeats)

    def stage():
        p, c = row_signatures(prompts, completions)
        return near_duplicates(p, c, labels, rank, row_ids, history, config, np.ones(n, dtype=bool))

    stage_s = _best_of(stage, repeats)
    base = datasketch_default(rows.head(min(n, baseline_rows)), sampler, config)

    # Bit-for-bit check against datasketch on a sample of this week's texts.
    p, _ = row_signatures(prompts[:200], completions[:200])
    hashfunc = functools.partial(xxhash.xxh32_intdigest, seed=1)
    for text, sig in zip(prompts[:200], p):
        m = MinHash(num_perm=config.num_perm, seed=config.minhash_seed, hashfunc=hashfunc)
        m.update_batch([s.encode("utf-8") for s in shingles(text, config.shingle_size)])
        assert np.array_equal(m.hashvalues, sig), "signature differs from datasketch's"
    out = {
        "rows": n,
        "signatures_rows_per_s": n / sig_s,
        "stage_rows_per_s": n / stage_s,
        "stage_seconds": stage_s,
        "datasketch_rows_per_s": base["rows_per_s"],
        "datasketch_rows": base["rows"],
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    print(
        f"{n} rows: signatures {out['signatures_rows_per_s']:,.0f} rows/s, stage {out['stage_rows_per_s']:,.0f} rows/s, "
        f"datasketch {base['rows_per_s']:,.0f} rows/s ({out['stage_rows_per_s'] / base['rows_per_s']:.1f}x); "
        f"load {load_start[0]:.2f} → {out['load_average']['end'][0]:.2f}",
        flush=True,
    )
    return out


def _markdown(report: dict) -> str:
    lines = [
        "# MinHash stage: throughput by week size",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}, commit {report['commit']}",
        "",
        "Best of the repeats. Signatures: prompt and completion signatures of every row (word 5-shingles, xxh32,",
        "128 affine32 permutations; equal to datasketch's MinHash bit for bit, checked in the run). Stage: signatures",
        "plus datasketch's MinHashLSH per label (filled in bulk) and the verification of its candidates, as in",
        "`deduplicate`. datasketch: `MinHash.update` per shingle and `MinHashLSH.insert` per row, on the first rows of",
        "the same week. The machine is shared (another engineer runs tests at the same time): the load average is",
        "given per size, and the ratios, measured back to back, are the figures to read.",
        "",
        "| rows | signatures rows/s | stage rows/s | datasketch rows/s (on) | stage / datasketch | load average (1 min) start → end |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for w in report["sizes"]:
        la = w["load_average"]
        lines.append(
            f"| {w['rows']:,} | {w['signatures_rows_per_s']:,.0f} | {w['stage_rows_per_s']:,.0f} | "
            f"{w['datasketch_rows_per_s']:,.0f} ({w['datasketch_rows']:,}) | "
            f"{w['stage_rows_per_s'] / w['datasketch_rows_per_s']:.1f}× | {la['start'][0]:.2f} → {la['end'][0]:.2f} |"
        )
    if len(report["sizes"]) > 1:
        a, b = report["sizes"][0], report["sizes"][-1]
        growth = (b["stage_seconds"] / a["stage_seconds"]) / (b["rows"] / a["rows"])
        lines += [
            "",
            f"Stage time {a['rows']:,} → {b['rows']:,} rows: {b['stage_seconds'] / a['stage_seconds']:.1f}× for "
            f"{b['rows'] / a['rows']:.0f}× the rows ({growth:.2f}× per row).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--baseline-rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "curation_minhash"))
    args = parser.parse_args(argv)
    report = {
        "command": " ".join(
            [".venv/bin/python -m benchmarks.minhash_scaling", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "sizes": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with MemorySampler() as sampler:
        for n in args.sizes:
            report["sizes"].append(measure(n, args.baseline_rows, args.repeats, sampler))
            out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
            out.with_suffix(".md").write_text(_markdown(report))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
