"""Redaction throughput with NER on: ours against Presidio's default path with the same NER, same run.

    .venv/bin/python -m benchmarks.redaction                 # 2,000 generated rows (benchmarks.corpus)
    .venv/bin/python -m benchmarks.redaction --rows 10000

Ours: `redact()` with the default `RedactionConfig()` (spaCy NER, Rampart, the pattern
recognizers, triggers, distinct texts batched through spaCy, re-analysis passes, one worker per
core when the week is large enough). The baseline: Presidio's `AnalyzerEngine` with its default
registry and the same models (the spaCy pipeline and Rampart's recognizer), plus
`AnonymizerEngine`, one process, every text on its own (`benchmarks.curation.presidio_default`).
The baseline does one pass; ours re-analyses what it rewrote until nothing new is found. Writes benchmarks/results/redaction.md/.json
with the load average, since these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from benchmarks.corpus import make_rows
from benchmarks.curation import RESULTS, MemorySampler, presidio_default, timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redaction")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--baseline-rows", type=int, default=1000, help="rows the (slow) baseline runs on")
    parser.add_argument("--out", default=str(RESULTS / "redaction"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from kto_pipeline.curate.redaction import RedactionConfig, engines_for, recognizers_used, redact

    rows = make_rows(args.rows)
    config = RedactionConfig()
    engines_for(config)  # built once per process, as in a run: not part of the rows/s
    load_before = os.getloadavg()
    with MemorySampler() as sampler:
        ours: dict = {}
        with timed(sampler, ours):
            result = redact(rows, config)
        baseline = presidio_default(rows.head(args.baseline_rows), sampler)
    ours_rate = len(rows) / ours["seconds"]
    recognizers, ner = recognizers_used(config)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": len(rows),
        "ours": {**ours, "rows_per_s": ours_rate, "entities": sum(result.entities_found.values())},
        "baseline": baseline,
        "ratio": ours_rate / baseline["rows_per_s"],
        "ner_model": ner,
        "recognizers": recognizers,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    lines = [
        "# Redaction throughput, NER on",
        "",
        f"{report['date']}, commit {report['commit']}, {report['machine']}, load average "
        f"{report['load_average_before']} before and {report['load_average_after']} after. "
        f"`.venv/bin/python -m benchmarks.redaction --rows {args.rows}`",
        "",
        "| path | rows | rows/s | peak MiB |",
        "| --- | ---: | ---: | ---: |",
        f"| ours: `redact()`, default config ({ner}, Rampart, patterns) | {len(rows)} | {ours_rate:.1f} | {ours['peak_mib']:.0f} |",
        f"| Presidio default AnalyzerEngine + the same spaCy NER and Rampart, one process | {baseline['rows']} | "
        f"{baseline['rows_per_s']:.1f} | {baseline['peak_mib']:.0f} |",
        "",
        f"Ratio: **{report['ratio']:.2f}×** (target ≥ 5×). Ours replaced {report['ours']['entities']} entities.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
