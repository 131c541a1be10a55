"""The PII policy shared by the redaction asset and its leak check."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from kto_pipeline.curate.redaction import PATTERN_ENTITIES, RedactionConfig


class PiiRedactor(dg.ConfigurableResource):
    """Which Presidio entities are replaced, from which score, and with how many processes."""

    entities: list[str] = Field(default=list(PATTERN_ENTITIES), description="Presidio entity types to redact (pattern recognizers)")
    score_threshold: float = Field(default=0.4, description="Hits at or above this score are replaced, and fail the leak check")
    phone_regions: list[str] = Field(default=["US", "GB"], description="Regions the phone recognizer parses numbers for (each one costs time)")
    spacy_model: str | None = Field(default=None, description="spaCy NER pipeline (name or path) for PERSON and LOCATION; default: an installed en_core_web_*")
    workers: int = Field(default=0, description="Processes; 0 means one per CPU")

    def config(self) -> RedactionConfig:
        return RedactionConfig(
            entities=tuple(self.entities), score_threshold=self.score_threshold,
            phone_regions=tuple(self.phone_regions), spacy_model=self.spacy_model, workers=self.workers,
        )
