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

from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.engines import Engines, engines_for, installed_spacy_model, offline_tldextract
from kto_pipeline.curate.redaction.entities import PATTERN_ENTITIES
from kto_pipeline.curate.redaction.leaks import Leak, recognizers_used, scan_for_leaks
from kto_pipeline.curate.redaction.ner import NER_ENTITIES, SHIPPED_NER_MODEL
from kto_pipeline.curate.redaction.redact import RedactionResult, redact

__all__ = [
    "NER_ENTITIES",
    "PATTERN_ENTITIES",
    "SHIPPED_NER_MODEL",
    "Engines",
    "Leak",
    "RedactionConfig",
    "RedactionResult",
    "engines_for",
    "installed_spacy_model",
    "offline_tldextract",
    "recognizers_used",
    "redact",
    "scan_for_leaks",
]
