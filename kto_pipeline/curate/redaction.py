"""PII redaction with Presidio, offline, with typed placeholders consistent within a record.

Presidio does the detection (its pattern recognizers always; spaCy NER for PERSON and
LOCATION when a spaCy NER pipeline is installed or configured) and the replacement (its
AnonymizerEngine with a custom operator). Three things make it fast enough for a weekly batch
on a small machine, none of which changes what is found:
  - each record's distinct texts are analysed once (an edit twin shares its prompt);
  - a recognizer only runs on a text that holds its trigger (no "@", no e-mail; fewer than
    seven digits, no phone number): triggers are supersets of what the recognizers match;
  - records are spread over a process pool with the engines built once per worker, because
    Presidio's batch engine only parallelises spaCy.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

from kto_pipeline.ingest.contract import render_messages

# Presidio's pattern-based entities that are PII. DATE_TIME and UUID are left out by default:
# they are not personal, and redacting them would damage the training text.
PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "US_SSN",
    "US_ITIN",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "MEDICAL_LICENSE",
    "UK_NHS",
    "CRYPTO",
    "MAC_ADDRESS",
)
NER_ENTITIES = ("PERSON", "LOCATION")
SPACY_NER_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf")

# A text can only hold an entity when it holds the entity's trigger. Each trigger is a
# superset of the recognizer's own patterns (checked against Presidio's in the tests).
_DIGITS = re.compile(r"\d")
_TRIGGERS: dict[str, Any] = {
    "EMAIL_ADDRESS": lambda t, d: "@" in t,
    "PHONE_NUMBER": lambda t, d: d >= 7,
    "CREDIT_CARD": lambda t, d: d >= 12,
    "IBAN_CODE": lambda t, d: d >= 2 and _IBAN_HINT.search(t) is not None,
    "IP_ADDRESS": lambda t, d: (d >= 1 and "." in t) or ":" in t,
    "URL": lambda t, d: _URL_HINT.search(t) is not None,
    "US_SSN": lambda t, d: d >= 9,
    "US_ITIN": lambda t, d: d >= 9,
    "US_BANK_NUMBER": lambda t, d: d >= 8,
    "US_PASSPORT": lambda t, d: d >= 8,
    "US_DRIVER_LICENSE": lambda t, d: d >= 1,
    "MEDICAL_LICENSE": lambda t, d: d >= 7,
    "UK_NHS": lambda t, d: d >= 10,
    "CRYPTO": lambda t, d: _CRYPTO_HINT.search(t) is not None,
    "MAC_ADDRESS": lambda t, d: d >= 1 and (":" in t or "-" in t or "." in t),
}
_IBAN_HINT = re.compile(r"[A-Za-z]{2}\s?\d{2}")
_URL_HINT = re.compile(r"[\w-]\.[A-Za-z]{2,}|://")
_CRYPTO_HINT = re.compile(r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[a-z0-9]{20,})")


@dataclass(frozen=True)
class RedactionConfig:
    """Which Presidio entities are replaced, from which score, and with how many processes."""

    entities: tuple[str, ...] = field(
        default=PATTERN_ENTITIES, metadata={"help": "Presidio entity types to redact (pattern recognizers)"}
    )
    score_threshold: float = field(
        # Phone numbers score 0.4 without context words.
        default=0.4,
        metadata={"help": "Hits at or above this score are replaced, and fail the leak check"},
    )
    phone_regions: tuple[str, ...] = field(
        default=("US", "GB"),
        metadata={"help": "Regions the phone recognizer parses numbers for (each one costs time)"},
    )
    spacy_model: str | None = field(
        default=None,
        metadata={
            "help": "spaCy NER pipeline (name or path) for PERSON and LOCATION; default: an installed en_core_web_*"
        },
    )
    ner: bool = field(
        default=True,
        metadata={"help": "Use spaCy NER when a pipeline is there (the leak check always scans without it)"},
    )
    workers: int = field(default=0, metadata={"help": "Processes; 0 means one per CPU"})
    chunk_records: int = field(default=500, metadata={"help": "Records per task sent to a worker"})
    min_records_per_worker: int = field(
        # A spawned worker costs ~4 s to start (imports).
        default=25_000,
        metadata={"help": "Fewest records that justify one more worker process"},
    )
    use_triggers: bool = field(
        default=True,
        metadata={"help": "Ask Presidio only for the entities a cheap scan of the text could match (digits, @, ...)"},
    )


@dataclass
class RedactionResult:
    rows: pd.DataFrame
    entities_found: Counter = field(default_factory=Counter)
    records_with_pii: int = 0


def installed_spacy_model(config: RedactionConfig) -> str | None:
    """The spaCy NER pipeline to use: the configured one, else an installed en_core_web_*."""
    if not config.ner:
        return None
    if config.spacy_model:
        return config.spacy_model
    try:
        import spacy.util
    except ImportError:  # pragma: no cover - presidio depends on spaCy
        return None
    return next((m for m in SPACY_NER_MODELS if spacy.util.is_package(m)), None)


def _offline_tldextract() -> None:
    # The e-mail recognizer's tldextract fetches the public suffix list on first use; the
    # snapshot bundled with tldextract is what an offline machine must use instead.
    import tldextract
    import tldextract.tldextract as te

    te.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class _Engines:
    """Presidio analyzer and anonymizer built once per process."""

    def __init__(self, config: RedactionConfig):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import PhoneRecognizer
        from presidio_anonymizer import AnonymizerEngine

        _offline_tldextract()
        model = installed_spacy_model(config)
        if model:
            nlp = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
        else:
            nlp = {"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}
        nlp_engine = NlpEngineProvider(nlp_configuration=nlp).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        registry.remove_recognizer("PhoneRecognizer")
        registry.add_recognizer(PhoneRecognizer(supported_regions=list(config.phone_regions)))
        self.analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
        self.anonymizer = AnonymizerEngine()
        self.anonymizer.add_anonymizer(_EntityCounter)
        self.config = config
        self.ner = model is not None
        self.entities = list(config.entities) + (list(NER_ENTITIES) if self.ner else [])
        self.recognizers = sorted(
            type(r).__name__ for r in registry.recognizers if set(r.supported_entities) & set(self.entities)
        )

    def analyze(self, text: str) -> list:
        if not text.strip():
            return []
        entities = self.entities
        if self.config.use_triggers:
            digits = len(_DIGITS.findall(text))
            entities = [e for e in entities if e not in _TRIGGERS or _TRIGGERS[e](text, digits)]
            if not entities:
                return []
        return self.analyzer.analyze(
            text, language="en", entities=entities, score_threshold=self.config.score_threshold
        )


def _operator_class():
    from presidio_anonymizer.operators import Operator, OperatorType

    class EntityCounter(Operator):
        """`<TYPE_n>`: the n-th distinct value of that type in the record (one shared mapping)."""

        def operate(self, text: str, params: dict) -> str:
            per_type = params["entity_mapping"].setdefault(params["entity_type"], {})
            if text not in per_type:
                per_type[text] = f"<{params['entity_type']}_{len(per_type) + 1}>"
            return per_type[text]

        def validate(self, params: dict) -> None:
            if not isinstance(params.get("entity_mapping"), dict):
                raise ValueError("entity_counter needs an entity_mapping dict")

        def operator_name(self) -> str:
            return "entity_counter"

        def operator_type(self):
            return OperatorType.Anonymize

    return EntityCounter


_EntityCounter = _operator_class()


def _redact_texts(engines: _Engines, texts: list[str]) -> tuple[list[str], Counter]:
    """Redact one record's texts with one mapping, numbered in reading order."""
    from presidio_anonymizer.entities import OperatorConfig

    distinct = list(dict.fromkeys(texts))
    found = {t: engines.analyze(t) for t in distinct}
    mapping: dict[str, dict[str, str]] = {}
    counts: Counter = Counter()
    # Number values in reading order (the anonymizer replaces right to left).
    for text in distinct:
        for res in sorted(found[text], key=lambda r: r.start):
            per_type = mapping.setdefault(res.entity_type, {})
            value = text[res.start : res.end]
            if value not in per_type:
                per_type[value] = f"<{res.entity_type}_{len(per_type) + 1}>"
    out: dict[str, str] = {}
    for text in distinct:
        if not found[text]:
            out[text] = text
            continue
        result = engines.anonymizer.anonymize(
            text=text,
            analyzer_results=found[text],
            operators={"DEFAULT": OperatorConfig("entity_counter", {"entity_mapping": mapping})},
        )
        out[text] = result.text
        counts.update(item.entity_type for item in result.items)
    return [out[t] for t in texts], counts


# One record: (prompt text, prompt messages JSON or None, completions of its rows).
_Record = tuple[str, str | None, list[str]]


def _redact_record(engines: _Engines, record: _Record) -> tuple[str, str | None, list[str], Counter]:
    prompt, messages_json, completions = record
    if messages_json is not None:
        messages = json.loads(messages_json)
        texts, counts = _redact_texts(engines, [m["content"] for m in messages] + completions)
        for msg, text in zip(messages, texts, strict=False):
            msg["content"] = text
        return render_messages(messages), json.dumps(messages, ensure_ascii=False), texts[len(messages) :], counts
    texts, counts = _redact_texts(engines, [prompt, *completions])
    return texts[0], None, texts[1:], counts


_WORKER: _Engines | None = None


def _init_worker(config: RedactionConfig) -> None:
    global _WORKER
    _WORKER = _Engines(config)


def _work(chunk: list[_Record]) -> list:
    assert _WORKER is not None
    return [_redact_record(_WORKER, record) for record in chunk]


@lru_cache(maxsize=4)
def engines_for(config: RedactionConfig) -> _Engines:
    return _Engines(config)


def _workers(config: RedactionConfig, n_records: int) -> int:
    wanted = config.workers or os.cpu_count() or 1
    return max(1, min(wanted, n_records // config.min_records_per_worker))


def _map_records(config: RedactionConfig, records: list[_Record]) -> list:
    workers = _workers(config, len(records))
    if workers == 1:
        engines = engines_for(config)
        return [_redact_record(engines, r) for r in records]
    chunks = [records[i : i + config.chunk_records] for i in range(0, len(records), config.chunk_records)]
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch threads exist
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
        return [item for chunk in pool.map(_work, chunks) for item in chunk]


def redact(rows: pd.DataFrame, config: RedactionConfig | None = None) -> RedactionResult:
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
    records: list[_Record] = [
        (prompts[idx[0]], None if pd.isna(messages_col[idx[0]]) else messages_col[idx[0]], completions[idx].tolist())
        for idx in groups
    ]
    results = _map_records(config, records)

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


@dataclass
class Leak:
    row_id: str
    field: str
    entity_type: str
    score: float
    text: str


def scan_for_leaks(
    rows: pd.DataFrame, config: RedactionConfig | None = None, fields: Iterable[str] = ("prompt", "completion")
) -> list[Leak]:
    """Pattern-recognizer hits at or above the threshold left in `rows` (after redaction)."""
    config = config or RedactionConfig()
    engines = engines_for(dataclasses.replace(config, ner=False))
    leaks = []
    for field_name in fields:
        for row_id, text in zip(rows["row_id"], rows[field_name], strict=True):
            if not isinstance(text, str):
                continue
            for res in engines.analyze(text):
                leaks.append(Leak(row_id, field_name, res.entity_type, round(res.score, 3), text[res.start : res.end]))
    return leaks


def recognizers_used(config: RedactionConfig | None = None) -> tuple[list[str], bool]:
    """The Presidio recognizers that run, and whether NER (PERSON, LOCATION) is among them."""
    engines = engines_for(config or RedactionConfig())
    return engines.recognizers, engines.ner
