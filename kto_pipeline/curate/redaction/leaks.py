"""The leak check's scan, and which recognizers ran."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.engines import engines_for
from kto_pipeline.curate.redaction.redact import outside_placeholders


@dataclass
class Leak:
    row_id: str
    field: str
    entity_type: str
    score: float
    text: str


def _units(rows: pd.DataFrame, field_name: str) -> Iterator[tuple[str, str]]:
    """(row_id, text) pairs to scan, cut as redaction cut them: a chat prompt message by message
    (its rendered text joins messages, and "user:" next to a name would read as context)."""
    messages = rows["prompt_messages"] if field_name == "prompt" and "prompt_messages" in rows.columns else None
    for i, (row_id, text) in enumerate(zip(rows["row_id"], rows[field_name], strict=True)):
        chat = None if messages is None else messages.iloc[i]
        if isinstance(chat, str):
            for message in json.loads(chat):
                yield row_id, str(message.get("content") or "")
        elif isinstance(text, str):
            yield row_id, text


# How the distinct texts are analysed: here (`analyze_here`), or, passed by a cluster backend,
# by the same engines on its workers; text → Presidio results, as `Engines.analyze_many` gives.
TextAnalyzer = Callable[[RedactionConfig, list[str]], dict[str, list]]


def analyze_here(config: RedactionConfig, texts: list[str]) -> dict[str, list]:
    return engines_for(config).analyze_many(texts)


def scan_for_leaks(
    rows: pd.DataFrame,
    config: RedactionConfig | None = None,
    fields: Iterable[str] = ("prompt", "completion"),
    analyzer: TextAnalyzer | None = None,
) -> list[Leak]:
    """Hits at or above the threshold left in `rows` (after redaction), found with the same NER,
    recognizers and context rules that redacted them: a name the redaction missed is a leak too."""
    config = config or RedactionConfig()
    units = [(field_name, row_id, text) for field_name in fields for row_id, text in _units(rows, field_name)]
    found = (analyzer or analyze_here)(config, list(dict.fromkeys(text for _, _, text in units)))
    return [
        Leak(row_id, field_name, res.entity_type, round(res.score, 3), text[res.start : res.end])
        for field_name, row_id, text in units
        for res in outside_placeholders(text, found[text])
    ]


def recognizers_used(config: RedactionConfig | None = None) -> tuple[list[str], str | None]:
    """The Presidio recognizers that run, and the spaCy NER pipeline among them (None: no NER)."""
    engines = engines_for(config or RedactionConfig())
    return engines.recognizers, engines.ner_model
