"""The leak check's scan, and which recognizers ran."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.engines import engines_for


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
