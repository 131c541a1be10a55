"""The PII policy shared by the redaction asset and its leak check."""

from __future__ import annotations

import dagster as dg

from kto_pipeline.curate.redaction import RedactionConfig
from resources.library_config import config_from


class PiiRedactor(
    config_from(
        RedactionConfig,
        base=dg.ConfigurableResource,
        fields=[
            "entities",
            "score_threshold",
            "phone_regions",
            "national_ids",
            "recognizers_yaml",
            "spacy_model",
            "ner",
            "ner_strength",
            "rampart",
            "workers",
        ],
        name="PiiRedactorConfig",
    )
):
    """Which Presidio entities are replaced, from which score, and with how many processes."""

    def config(self) -> RedactionConfig:
        return self.to_library()
