"""Curation's heavy stages on a 1-node vs a 2-node Ray cluster (LocalRayCluster, 1 CPU each):
redaction, MinHash signatures and embedding through `kto_pipeline.cluster`, rows/s per stage
and the speed-up of the second node.

    .venv/bin/python -m benchmarks.ray_scaling --rows 50000 --embed-rows 10000 --redaction-rows 1000

The week is benchmarks/corpus.py's (as benchmarks/curation.py builds it). MinHash signs every
row of it; embedding and redaction, much slower per row, take its first `--embed-rows` and
`--redaction-rows` rows (a full 50k-row redaction with NER is hours on one core). Each stage
runs once per cluster after a warm-up that loads the models in every worker (the warm-up time
is reported, not counted). The outputs on both clusters are compared byte for byte. Writes
benchmarks/results/ray_scaling.json and .md, with the load average before and after each run:
the two cores are shared with other work, which a 2-node run competes with more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.corpus import make_rows

RESULTS = Path(__file__).parent / "results"
STAGES = ("redaction", "minhash", "embedding")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run_cluster(nodes: int, rows, args: argparse.Namespace) -> tuple[dict, dict]:
    """One cluster of `nodes` 1-CPU nodes: warm-up, then each stage timed. Returns the figures
    and the stage outputs (for the comparison between clusters)."""
    import ray

    from kto_pipeline.cluster import RayBackend, RayConfig, connect
    from kto_pipeline.curate.embeddings import TextEmbedder
    from kto_pipeline.curate.redaction import RedactionConfig, redact
    from kto_pipeline.devtools.ray_cluster import LocalRayCluster

    prompts = rows["prompt"].astype(str).tolist()
    completions = rows["completion"].astype(str).tolist()
    red_rows = rows.iloc[: args.redaction_rows].reset_index(drop=True)
    embed_texts = prompts[: args.embed_rows] + completions[: args.embed_rows]
    redaction_config = RedactionConfig(chunk_records=args.chunk_records)
    figures: dict = {"nodes": nodes, "load_before": _load(), "stages": {}}
    outputs: dict = {}
    with LocalRayCluster(nodes=nodes, cpus_per_node=1) as cluster:
        config = RayConfig(address=cluster.address)
        backend = RayBackend(config)
        connect(config)
        encoder = backend.encoder(TextEmbedder())
        # Warm-up: as many tasks as nodes for each stage, so every worker loads its models.
        t = time.perf_counter()
        redact(rows.iloc[: 8 * nodes], RedactionConfig(chunk_records=4), mapper=backend.redaction_mapper())
        encoder.embed([f"warm-up text {i}" for i in range(64 * nodes)])
        figures["warmup_seconds"] = time.perf_counter() - t

        def timed(name: str, count: int, fn):
            load = _load()
            t = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t
            figures["stages"][name] = {
                "rows": count,
                "seconds": seconds,
                "rows_per_s": count / seconds,
                "load_before": load,
                "load_after": _load(),
            }
            print(f"{nodes} node(s) {name}: {count / seconds:,.0f} rows/s ({seconds:.1f} s)", flush=True)
            return out

        if args.redaction_rows:
            result = timed(
                "redaction",
                len(red_rows),
                lambda: redact(red_rows, redaction_config, mapper=backend.redaction_mapper()),
            )
            outputs["redaction"] = result.rows.to_json(date_format="iso").encode()
        signatures = backend.row_signatures()
        sig_p, sig_c = timed("minhash", len(prompts), lambda: signatures(prompts, completions))
        outputs["minhash"] = sig_p.tobytes() + sig_c.tobytes()
        vectors = timed("embedding", args.embed_rows, lambda: encoder.embed(embed_texts))
        outputs["embedding"] = np.ascontiguousarray(vectors).tobytes()
        ray.shutdown()
    figures["load_after"] = _load()
    return figures, outputs


def _markdown(report: dict) -> str:
    one, two = report["clusters"]
    lines = [
        "# Curation on a Ray cluster: 1 node vs 2 nodes (1 CPU each)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}, commit {report['commit']}",
        "",
        report["note"],
        "",
        "| stage | rows | 1 node rows/s | 2 nodes rows/s | speed-up | load (1 min) 1 node | load (1 min) 2 nodes |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for stage in STAGES:
        if stage not in one["stages"]:
            continue
        a, b = one["stages"][stage], two["stages"][stage]
        lines.append(
            f"| {stage} | {a['rows']:,} | {a['rows_per_s']:,.1f} | {b['rows_per_s']:,.1f} | "
            f"{report['speedup'][stage]:.2f}× | {a['load_before']} → {a['load_after']} | "
            f"{b['load_before']} → {b['load_after']} |"
        )
    lines += [
        "",
        f"All three stages, time-weighted (sum of the stage times, 1 node / 2 nodes): "
        f"{report['speedup']['total']:.2f}× (target ≥ 1.7×).",
        "",
        f"Warm-up (models loaded in every worker, not counted): {one['warmup_seconds']:.0f} s on 1 node, "
        f"{two['warmup_seconds']:.0f} s on 2 nodes. Outputs of the two clusters identical byte for byte: "
        f"{', '.join(f'{k} {v}' for k, v in report['identical'].items())}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the week (MinHash signs all of them)")
    parser.add_argument("--embed-rows", type=int, default=10_000, help="first rows whose texts are embedded")
    parser.add_argument("--redaction-rows", type=int, default=1_000, help="first rows redacted (0: skip)")
    parser.add_argument("--chunk-records", type=int, default=50, help="records per redaction task")
    parser.add_argument("--note", default="", help="text put at the top of the results")
    parser.add_argument("--out", default=str(RESULTS / "ray_scaling"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    rows = make_rows(args.rows, seed=7)
    args.embed_rows = min(args.embed_rows, len(rows))
    args.redaction_rows = min(args.redaction_rows, len(rows))
    report: dict = {
        "command": " ".join([".venv/bin/python -m benchmarks.ray_scaling", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "rows": len(rows),
        "clusters": [],
    }
    outputs = []
    for nodes in (1, 2):
        figures, out = run_cluster(nodes, rows, args)
        report["clusters"].append(figures)
        outputs.append(out)
    one, two = report["clusters"]
    report["speedup"] = {s: one["stages"][s]["seconds"] / two["stages"][s]["seconds"] for s in one["stages"]}
    report["speedup"]["total"] = sum(one["stages"][s]["seconds"] for s in one["stages"]) / sum(
        two["stages"][s]["seconds"] for s in two["stages"]
    )
    report["identical"] = {s: outputs[0][s] == outputs[1][s] for s in outputs[0]}
    report["note"] = (
        f"MinHash signatures over all {len(rows):,} rows of the week (prompt and completion); embedding of the "
        f"first {args.embed_rows:,} rows' prompts and completions (distinct texts, int8 ONNX on the CPU); "
        f"redaction (NER included) of the first {args.redaction_rows:,} rows"
        + (
            " — fewer rows than the week, as a full week's NER redaction takes hours on one core"
            if args.redaction_rows < len(rows)
            else ""
        )
        + ". Each node is a separate raylet with 1 CPU on one 2-core machine shared with other work, so the "
        "2-node run also competes with that work for the second core: read the load averages beside each figure. "
        + args.note
    ).strip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
