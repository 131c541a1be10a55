"""PII recall of `redact` on the seeded corpus of benchmarks.pii_corpus: per type, overall, and what it
changes in records that hold no personal data.

    .venv/bin/python -m benchmarks.pii_recall                         # seed 0, RedactionConfig()
    .venv/bin/python -m benchmarks.pii_recall --held-out              # and the held-out corpus (seed 1)
    .venv/bin/python -m benchmarks.pii_recall --config '{"score_threshold": 0.3}' --name pii_recall_t03

Writes benchmarks/results/<name>.md and .json (name: pii_recall).

When a PII substring counts as caught. Placeholders shift offsets, so the check does not look at the
span's old place but at what is left of its text in the redacted field:
  1. the exact substring no longer occurs in the redacted field (as a whole word: not touching another
     letter or digit, case-sensitive). The corpus guarantees every such occurrence in the original field
     is a span of that same value, so an occurrence left means this PII survived: **missed**. A value written
     twice in a field (a name in the greeting and the sign-off) is missed in both places while one copy is
     left: the copy left discloses it all the same;
  2. no token of it (a run of letters and digits, 3 characters or more) that occurs nowhere else in the
     original field survives in the redacted field. A survivor means part of it was left ("<PERSON_1>
     Sharma", "42 <LOCATION_1> Road"): **partial**, which counts as not caught.
Otherwise it is **caught**, whatever placeholder replaced it: recall measures what is removed, not the
label. Which placeholder it got is read from an alignment of the redacted text with the original (the
literal pieces between placeholders matched back in order); the same alignment gives the exact
caught/not-caught answer where it succeeds, and the report counts where the two disagree.

A negative record (no personal data) counts as changed when any byte of its prompt or completions
differs; the replaced pieces and their placeholder types are listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.pii_corpus import TYPES, Corpus, Record, Span, bounded, make_corpus
from kto_pipeline.curate.redaction import RedactionConfig, installed_spacy_model, redact

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
TOKEN = re.compile(r"[^\W_]+")
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)(?:_\d+)?>")
EXAMPLES = 20


# ------------------------------------------------------------------------------------------- the rule
def outcome(span: Span, original: str, redacted: str) -> tuple[str, list[str]]:
    """("caught" | "partial" | "missed", the surviving tokens) for one span, by the rule above."""
    if bounded(span.value).search(redacted):
        return "missed", [span.value]
    elsewhere = original[: span.start] + " " + original[span.end :]
    survivors = sorted(
        tok
        for tok in set(TOKEN.findall(span.value))
        if len(tok) >= 3 and not bounded(tok).search(elsewhere) and bounded(tok).search(redacted)
    )
    return ("partial" if survivors else "caught"), survivors


def replacements(original: str, redacted: str) -> list[tuple[int, int, str]] | None:
    """(start, end, placeholder type) of each original piece a placeholder replaced; None if unaligned."""
    pieces, types, at = [], [], 0
    for m in PLACEHOLDER.finditer(redacted):
        pieces.append(re.escape(redacted[at : m.start()]))
        types.append(m.group(1))
        at = m.end()
    if not types:
        return [] if original == redacted else None
    pattern = "(.+?)".join(pieces) + "(.+?)" + re.escape(redacted[at:])
    m = re.fullmatch(pattern, original, re.S)
    if m is None:
        return None
    return [(m.start(i + 1), m.end(i + 1), t) for i, t in enumerate(types)]


def _diff_pieces(original: str, redacted: str) -> list[tuple[str, str]]:
    """(original piece, what replaced it) where the alignment failed: difflib's changed blocks."""
    sm = difflib.SequenceMatcher(None, original, redacted, autojunk=False)
    return [(original[i1:i2], redacted[j1:j2]) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"]


# ------------------------------------------------------------------------------------------ scoring
def _texts(frame, corpus: Corpus) -> dict[str, dict[str, str]]:
    """record_id -> field -> redacted text, read back from the redacted rows (see Corpus.frame)."""
    out: dict[str, dict[str, str]] = {}
    for row in frame.itertuples(index=False):
        texts = out.setdefault(row.record_id, {"prompt": row.prompt})
        field = "edited_completion" if row.signal == "edit" else "completion"
        texts[field] = row.completion
    return out


def _recall(counts: Counter) -> float | None:
    n = counts["caught"] + counts["partial"] + counts["missed"]
    return counts["caught"] / n if n else None


def score(corpus: Corpus, redacted_frame) -> dict:
    texts = _texts(redacted_frame, corpus)
    by_type: dict[str, Counter] = defaultdict(Counter)
    by_variant: dict[tuple[str, str], Counter] = defaultdict(Counter)
    by_origin: dict[tuple[str, str], Counter] = defaultdict(Counter)
    by_field: dict[str, Counter] = defaultdict(Counter)
    labels: dict[str, Counter] = defaultdict(Counter)
    misses: dict[str, list] = defaultdict(list)
    overall: Counter = Counter()
    aligned = unaligned = disagree = 0
    over_redaction: list[dict] = []
    over_count = 0
    negatives = {"records": 0, "changed": 0, "by_category": defaultdict(Counter), "examples": [], "pieces": 0}

    for record in corpus.records:
        red = texts[record.record_id]
        changed = False
        for name in record.fields():
            original, redacted = record.text(name), red[name]
            changed |= original != redacted
            spans = [s for s in record.spans if s.field == name]
            places = replacements(original, redacted)
            if places is None:
                unaligned += 1
            else:
                aligned += 1
            if record.negative:
                _negative_pieces(negatives, record, name, original, redacted, places)
                continue
            for span in spans:
                result, survivors = outcome(span, original, redacted)
                for bucket in (
                    overall,
                    by_type[span.type],
                    by_variant[(span.type, span.variant)],
                    by_origin[(span.type, span.origin)],
                    by_field[name],
                ):
                    bucket[result] += 1
                if places is not None:
                    hit = [t for s, e, t in places if s < span.end and e > span.start]
                    labels[span.type][" + ".join(sorted(set(hit))) or "(not replaced)"] += 1
                    exact = all(
                        any(s <= i < e for s, e, _ in places)
                        for i in range(span.start, span.end)
                        if original[i].isalnum()
                    )
                    disagree += exact != (result == "caught")
                seen = {m["record"] for m in misses[span.type]}
                if result != "caught" and len(misses[span.type]) < 10 and record.record_id not in seen:
                    misses[span.type].append(
                        {
                            "record": record.record_id,
                            "field": name,
                            "value": span.value,
                            "variant": span.variant,
                            "origin": span.origin,
                            "outcome": result,
                            "survived": survivors,
                            "context": _context(original, span),
                        }
                    )
            for s, e, t in places or []:
                if not any(sp.start < e and sp.end > s for sp in spans):
                    over_count += 1
                    if len(over_redaction) < EXAMPLES:
                        over_redaction.append(
                            {"record": record.record_id, "field": name, "text": original[s:e], "as": t}
                        )
        if record.negative:
            negatives["records"] += 1
            negatives["changed"] += changed
            negatives["by_category"][record.category]["records"] += 1
            negatives["by_category"][record.category]["changed"] += changed

    def table(groups: dict) -> dict:
        return {k: {"count": sum(c.values()), "recall": _recall(c), **dict(c)} for k, c in sorted(groups.items())}

    return {
        "seed": corpus.seed,
        "held_out": corpus.held_out,
        "records": {"positive": len(corpus.positives), "negative": len(corpus.negatives)},
        "spans": sum(overall.values()),
        "overall": {"count": sum(overall.values()), "recall": _recall(overall), **dict(overall)},
        "by_type": {
            t: {**table(by_type).get(t, {"count": 0}), "labelled_as": dict(labels[t].most_common())} for t in TYPES
        },
        "by_variant": {f"{t} | {v}": row for (t, v), row in table(by_variant).items()},
        "by_origin": {f"{t} | {o}": row for (t, o), row in table(by_origin).items() if o},
        "by_field": table(by_field),
        "misses": dict(misses),
        "negatives": {
            "records": negatives["records"],
            "changed": negatives["changed"],
            "share_changed": negatives["changed"] / negatives["records"] if negatives["records"] else None,
            "replaced_pieces": negatives["pieces"],
            "by_category": {k: dict(v) for k, v in sorted(negatives["by_category"].items())},
            "examples": negatives["examples"],
        },
        "positives_over_redaction": {"pieces": over_count, "examples": over_redaction},
        "alignment": {"fields_aligned": aligned, "fields_unaligned": unaligned, "rule_vs_alignment_disagree": disagree},
    }


def _context(text: str, span: Span, width: int = 40) -> str:
    return text[max(0, span.start - width) : span.end + width].replace("\n", " ")


def _negative_pieces(acc: dict, record: Record, name: str, original: str, redacted: str, places) -> None:
    if original == redacted:
        return
    if places is not None:
        pieces = [(original[s:e], t) for s, e, t in places]
    else:
        pieces = [(a, b) for a, b in _diff_pieces(original, redacted)]
    acc["pieces"] += len(pieces)
    for text, replaced_by in pieces:
        if len(acc["examples"]) < EXAMPLES:
            acc["examples"].append(
                {
                    "record": record.record_id,
                    "category": record.category,
                    "field": name,
                    "text": text,
                    "as": replaced_by,
                }
            )


# ------------------------------------------------------------------------------------------ running
def run(corpus: Corpus, config: RedactionConfig) -> dict:
    frame = corpus.frame()
    t0 = time.perf_counter()
    redact(frame.head(1), config)  # builds (and caches) the engines: a one-off cost, timed apart
    engines_s = time.perf_counter() - t0
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = redact(frame, config)
    wall = time.perf_counter() - t0
    out = score(corpus, result.rows)
    out["timing"] = {
        "engine_build_s": engines_s,
        "wall_s": wall,
        "records": len(corpus.records),
        "rows": len(frame),
        "records_per_s": len(corpus.records) / wall,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    out["entities_found"] = dict(result.entities_found.most_common())
    return out


def _git() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    import kto_pipeline

    library = Path(kto_pipeline.__file__).parent
    dirty = git("status", "--porcelain", "--", "kto_pipeline").splitlines() if library.is_relative_to(ROOT) else []
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "library": str(library),
        "library_uncommitted": [line[3:] for line in dirty],
    }


def _config(text: str | None) -> RedactionConfig:
    if not text:
        return RedactionConfig()
    # Lists become tuples: the config is frozen and hashed (the engines are cached per config).
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
    return RedactionConfig(**values)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(report: dict) -> str:
    main, held = report["corpora"]["main"], report["corpora"].get("held_out")
    t = main["timing"]
    lines = [
        "# PII recall of `redact`",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; commit {report['git']['commit']}"
        + (
            f" with uncommitted library changes ({', '.join(report['git']['library_uncommitted'])})"
            if report["git"]["library_uncommitted"]
            else ""
        )
        + "  ",
        f"Library: {report['git']['library']}  ",
        *([f"Note: {report['note']}  "] if report["note"] else []),
        f"Machine: {report['machine']}; load average {' / '.join(f'{x:.2f}' for x in t['load_average_before'])}"
        " (1/5/15 min, before the timed run)  ",
        f"Config: `{json.dumps(report['config'])}`; spaCy NER pipeline: {report['spacy_model'] or 'none'}",
        "",
        f"Corpus: seed {main['seed']}, {main['records']['positive']} positive records with {main['spans']} PII "
        f"substrings, {main['records']['negative']} negative records (benchmarks/pii_corpus.py)"
        + (
            f"; held-out: seed {held['seed']}, other halves of the name/street/city lists, {held['spans']} substrings"
            if held
            else ""
        )
        + ".",
        "",
        "Caught: the substring no longer occurs in the redacted field and no token of it (≥3 letters/digits, found "
        "nowhere else in the original field) survives; partial: the substring is gone but such a token is left "
        "(counted as not caught). Full rule in the module docstring.",
        "",
        f"**Overall recall {_pct(main['overall']['recall'])}** ({main['overall'].get('caught', 0)} of "
        f"{main['overall']['count']})"
        + (
            f"; held-out {_pct(held['overall']['recall'])} ({held['overall'].get('caught', 0)} of {held['spans']})"
            if held
            else ""
        )
        + f". Negative records changed: **{_pct(main['negatives']['share_changed'])}** "
        f"({main['negatives']['changed']} of {main['negatives']['records']}). "
        f"Throughput {t['records_per_s']:.1f} records/s ({t['records']} records, {t['rows']} rows, "
        f"{t['wall_s']:.1f} s; engines built in {t['engine_build_s']:.1f} s beforehand).",
        "",
        "## Recall per type",
        "",
    ]
    head = "| type | count | recall | partial | missed | replaced as |"
    rule = "| --- | ---: | ---: | ---: | ---: | --- |"
    if held:
        head = "| type | count | recall | partial | missed | held-out count | held-out recall | replaced as |"
        rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    lines += [head, rule]
    for typ in TYPES:
        row = main["by_type"][typ]
        labelled = ", ".join(f"{k} {v}" for k, v in list(row["labelled_as"].items())[:3])
        cells = [typ, str(row["count"]), _pct(row.get("recall")), str(row.get("partial", 0)), str(row.get("missed", 0))]
        if held:
            cells += [str(held["by_type"][typ]["count"]), _pct(held["by_type"][typ].get("recall"))]
        lines.append("| " + " | ".join([*cells, labelled]) + " |")
    total = main["overall"]
    cells = ["**all**", str(total["count"]), f"**{_pct(total['recall'])}**", str(total.get("partial", 0))]
    cells.append(str(total.get("missed", 0)))
    if held:
        cells += [str(held["overall"]["count"]), f"**{_pct(held['overall']['recall'])}**"]
    lines += ["| " + " | ".join([*cells, ""]) + " |", ""]

    lines += [
        "By field: " + ", ".join(f"{k} {_pct(v['recall'])} of {v['count']}" for k, v in main["by_field"].items()),
        "",
    ]
    lines += ["## Negative records (no personal data)", ""]
    neg = main["negatives"]
    lines += [
        f"{neg['changed']} of {neg['records']} changed ({_pct(neg['share_changed'])}), {neg['replaced_pieces']} "
        "pieces replaced.",
        "",
        "| category | records | changed |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {k} | {v['records']} | {v.get('changed', 0)} |" for k, v in neg["by_category"].items()]
    lines += ["", f"First {EXAMPLES} replaced pieces (synthetic text):", ""]
    lines += ["| record | category | field | replaced text | as |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {e['record']} | {e['category']} | {e['field']} | `{_cell(e['text'])}` | {_cell(e['as'])} |"
        for e in neg["examples"]
    ] or ["| – | | | | |"]
    over = main["positives_over_redaction"]
    lines += [
        "",
        f"In positive records, {over['pieces']} replaced pieces overlap no PII substring"
        + (
            ": " + "; ".join(f"`{_cell(e['text'])}` as {e['as']}" for e in over["examples"][:10])
            if over["examples"]
            else ""
        )
        + ".",
        "",
        "## Recall by variant",
        "",
        "| type | variant | count | recall |",
        "| --- | --- | ---: | ---: |",
    ]
    for key, row in main["by_variant"].items():
        typ, variant = key.split(" | ", 1)
        lines.append(f"| {typ} | {variant} | {row['count']} | {_pct(row['recall'])} |")
    lines += [
        "",
        "## Recall by culture or country",
        "",
        "| type | origin | count | recall |",
        "| --- | --- | ---: | ---: |",
    ]
    for key, row in main["by_origin"].items():
        if key in main["by_variant"]:  # a phone's variant is its country: already above
            continue
        typ, origin = key.split(" | ", 1)
        lines.append(f"| {typ} | {origin} | {row['count']} | {_pct(row['recall'])} |")
    lines += ["", "## Missed examples (first 3 per type)", ""]
    for typ in TYPES:
        for miss in main["misses"].get(typ, [])[:3]:
            survived = f", left: {', '.join(miss['survived'])}" if miss["outcome"] == "partial" else ""
            lines.append(f"- {typ} ({miss['variant']}, {miss['outcome']}{survived}): …{_cell(miss['context'])}…")
    a = main["alignment"]
    lines += [
        "",
        f"Alignment: {a['fields_aligned']} fields aligned, {a['fields_unaligned']} not; the rule and the aligned "
        f"exact check disagree on {a['rule_vs_alignment_disagree']} substrings (the alignment judges each place "
        "alone: a value repeated in a field and left in one place is caught in the other by the alignment, missed "
        "in both by the rule). Placeholders Presidio reported: "
        + ", ".join(f"{k} {v}" for k, v in main["entities_found"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--held-out",
        type=int,
        nargs="?",
        const=1,
        default=None,
        metavar="SEED",
        help="also score a corpus of this seed (default 1) drawn from the other half of each name/street/city list",
    )
    parser.add_argument("--n-positive", type=int, default=300)
    parser.add_argument("--n-negative", type=int, default=110)
    parser.add_argument("--config", default=None, help="RedactionConfig fields as JSON; default RedactionConfig()")
    parser.add_argument("--name", default="pii_recall", help="results file name (without extension)")
    parser.add_argument("--note", default="", help="a line for the report's header (what was measured, and how)")
    args = parser.parse_args(argv)

    config = _config(args.config)
    corpora = {"main": make_corpus(args.seed, args.n_positive, args.n_negative)}
    if args.held_out is not None:
        corpora["held_out"] = make_corpus(args.held_out, args.n_positive, args.n_negative, held_out=True)
    report = {
        "command": " ".join([".venv/bin/python -m benchmarks.pii_recall", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": _git(),
        "note": args.note,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "spacy_model": installed_spacy_model(config),
        "corpora": {name: run(corpus, config) for name, corpus in corpora.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    for name, res in report["corpora"].items():
        per_type = ", ".join(f"{t} {_pct(res['by_type'][t].get('recall'))}" for t in TYPES)
        print(f"{name}: recall {_pct(res['overall']['recall'])} of {res['spans']}; {per_type}")
        changed, speed = _pct(res["negatives"]["share_changed"]), res["timing"]["records_per_s"]
        print(f"{name}: negatives changed {changed}; {speed:.1f} records/s")
    return report


if __name__ == "__main__":
    main()
