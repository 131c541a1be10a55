"""`redact`: a week's rows with PII replaced, record by record, in one process or a pool."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pandas as pd

from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.engines import Engines, engines_for
from kto_pipeline.ingest.contract import render_messages


@dataclass
class RedactionResult:
    rows: pd.DataFrame
    entities_found: Counter = field(default_factory=Counter)
    records_with_pii: int = 0


# Redacting changes a text, and a model reads the new text afresh ("Please note: <CRYPTO_1> is
# mine." can make "mine" look like a name), so a record is re-analysed until nothing new is
# found: the leak check, which re-scans with the same engines, then finds nothing by
# construction, and whatever a re-scan would have flagged is redacted, not shipped.
MAX_PASSES = 3
MIN_ECHO_CHARS = 4  # shorter values ("Al", "42") are too often something else elsewhere
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def outside_placeholders(text: str, results: list) -> list:
    """The hits that do not touch a placeholder (a model may tag the "PERSON_1" inside one)."""
    spans = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
    return [r for r in results if not any(r.start < end and start < r.end for start, end in spans)]


def _number(mapping: dict[str, dict[str, str]], texts: list[str], found: Mapping[str, list]) -> None:
    # Number values in reading order (the anonymizer replaces right to left).
    for text in texts:
        for res in sorted(found[text], key=lambda r: r.start):
            per_type = mapping.setdefault(res.entity_type, {})
            value = text[res.start : res.end]
            if value not in per_type:
                per_type[value] = f"<{res.entity_type}_{len(per_type) + 1}>"


class _RecordTexts:
    """One record's texts (prompt or messages, completions) through the passes, with one
    placeholder mapping, numbered in reading order."""

    def __init__(self, texts: list[str]):
        from presidio_anonymizer.entities import OperatorConfig

        self.texts = texts
        self.current = {t: t for t in dict.fromkeys(texts)}
        self.mapping: dict[str, dict[str, str]] = {}
        self.operators = {"DEFAULT": OperatorConfig("entity_counter", {"entity_mapping": self.mapping})}
        self.counts: Counter = Counter()
        self.changed: list[str] = []  # the texts (by original) the last pass rewrote

    def apply(self, engines: Engines, found: Mapping[str, list]) -> None:
        """Replace `found` (original text → hits in its current form), and every other occurrence
        of a found value in the record's texts."""
        found = self._everywhere(found)
        todo = [t for t in self.current if found.get(t)]
        _number(self.mapping, [self.current[t] for t in todo], {self.current[t]: found[t] for t in todo})
        for t in todo:
            result = engines.anonymizer.anonymize(
                text=self.current[t], analyzer_results=found[t], operators=self.operators
            )
            self.current[t] = result.text
            self.counts.update(item.entity_type for item in result.items)
        self.changed = todo

    def _everywhere(self, found: Mapping[str, list]) -> dict[str, list]:
        # A value found in one text of a record is personal wherever the record repeats it: the
        # assistant echoing "481826448123" or "priya" back has no label or cue of its own.
        from presidio_analyzer import RecognizerResult

        values = {
            (self.current[t][r.start : r.end], r.entity_type, r.score)
            for t in self.current
            for r in found.get(t, [])
            if r.end - r.start >= MIN_ECHO_CHARS
        }
        out = {t: list(found.get(t, [])) for t in self.current}
        for value, entity, score in sorted(values, key=lambda v: -len(v[0])):
            pattern = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)
            for t, results in out.items():
                for m in pattern.finditer(self.current[t]):
                    if not any(r.start < m.end() and m.start() < r.end for r in results):
                        results.append(RecognizerResult(entity, m.start(), m.end(), score))
        return out

    def output(self) -> list[str]:
        return [self.current[t] for t in self.texts]


# One record: (prompt text, prompt messages JSON or None, completions of its rows).
Record = tuple[str, str | None, list[str]]
# The same, redacted, with the count of entities replaced per type.
RedactedRecord = tuple[str, str | None, list[str], Counter]


def _record_texts(record: Record) -> list[str]:
    prompt, messages_json, completions = record
    if messages_json is not None:
        return [m["content"] for m in json.loads(messages_json)] + completions
    return [prompt, *completions]


def _finish(record: Record, state: _RecordTexts) -> RedactedRecord:
    prompt, messages_json, completions = record
    texts = state.output()
    if messages_json is not None:
        messages = json.loads(messages_json)
        for msg, text in zip(messages, texts, strict=False):
            msg["content"] = text
        return render_messages(messages), json.dumps(messages, ensure_ascii=False), texts[len(messages) :], state.counts
    return texts[0], None, texts[1:], state.counts


def redact_chunk(engines: Engines, records: list[Record]) -> list[RedactedRecord]:
    """A chunk of records: every distinct text analysed in one batched NLP pass, then the texts
    each pass rewrote analysed again, also batched across the chunk."""
    states = [_RecordTexts(_record_texts(record)) for record in records]
    analyzed = engines.analyze_many(t for state in states for t in state.current)
    for state in states:
        state.apply(engines, analyzed)
    for _ in range(MAX_PASSES - 1):
        pending = [state for state in states if state.changed]
        if not pending:
            break
        again = engines.analyze_many(state.current[t] for state in pending for t in state.changed)
        for state in pending:
            state.apply(
                engines,
                {t: outside_placeholders(state.current[t], again[state.current[t]]) for t in state.changed},
            )
    return [_finish(record, state) for record, state in zip(records, states, strict=True)]


_WORKER: Engines | None = None


def _init_worker(config: RedactionConfig) -> None:
    global _WORKER
    _WORKER = Engines(config, model_threads=1)


def _work(chunk: list[Record]) -> list:
    assert _WORKER is not None
    return redact_chunk(_WORKER, chunk)


def _workers(config: RedactionConfig, n_records: int) -> int:
    wanted = config.workers or os.cpu_count() or 1
    return max(1, min(wanted, n_records // config.records_per_worker()))


def map_records(config: RedactionConfig, records: list[Record]) -> list[RedactedRecord]:
    workers = _workers(config, len(records))
    chunks = [records[i : i + config.chunk_records] for i in range(0, len(records), config.chunk_records)]
    if workers == 1:
        engines = engines_for(config)
        return [item for chunk in chunks for item in redact_chunk(engines, chunk)]
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch threads exist
    # concurrent.futures, not multiprocessing.Pool: when a worker dies (the OOM killer, a kill -9)
    # Pool replaces it and waits forever for the chunk it held; the executor fails the map.
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(config,)) as pool:
        try:
            return [item for chunk in pool.map(_work, chunks) for item in chunk]
        except BrokenProcessPool as exc:
            raise RuntimeError(
                f"a redaction worker process died ({exc}); nothing was written, rerun the step "
                "(if the OOM killer took it, lower RedactionConfig.workers or chunk_records)"
            ) from exc


# How a list of records is redacted: here, in one process or a local pool (`map_records`);
# a cluster backend passes its own, which must return what `redact_chunk` returns, in order.
RecordMapper = Callable[[RedactionConfig, list[Record]], list[RedactedRecord]]


def redact(
    rows: pd.DataFrame, config: RedactionConfig | None = None, mapper: RecordMapper | None = None
) -> RedactionResult:
    """The rows with PII in prompts, prompt messages and completions replaced by placeholders.

    All rows of one record (a thumb, or an edit and its original) share one mapping, so the
    same e-mail is `<EMAIL_ADDRESS_1>` in the prompt, the edit and the original alike.
    """
    config = config or RedactionConfig()
    out = rows.copy()
    if rows.empty:
        return RedactionResult(out)
    groups = list(rows.groupby("record_id", sort=False).indices.values())
    prompts = out["prompt"].to_numpy(dtype=object).copy()
    messages_col = out["prompt_messages"].to_numpy(dtype=object).copy()
    completions = out["completion"].to_numpy(dtype=object).copy()
    records: list[Record] = [
        (prompts[idx[0]], None if pd.isna(messages_col[idx[0]]) else messages_col[idx[0]], completions[idx].tolist())
        for idx in groups
    ]
    results = (mapper or map_records)(config, records)

    found: Counter = Counter()
    with_pii = 0
    for idx, (prompt, messages, texts, counts) in zip(groups, results, strict=True):
        prompts[idx] = prompt
        messages_col[idx] = messages
        completions[idx] = texts
        found.update(counts)
        with_pii += bool(counts)
    out["prompt"] = pd.array(prompts, dtype=rows["prompt"].dtype)
    out["prompt_messages"] = pd.array(messages_col, dtype=rows["prompt_messages"].dtype)
    out["completion"] = pd.array(completions, dtype=rows["completion"].dtype)
    return RedactionResult(out, found, with_pii)
