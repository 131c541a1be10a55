"""Presidio's analyzer and anonymizer, built once per process and offline."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.ner import (
    LOCATION_CONTEXT,
    NER_ENTITIES,
    PERSON_CONTEXT,
    SPACY_NER_MODELS,
    context_enhancer,
    name_form_recognizers,
    ner_recognizers,
    nlp_configuration,
    prepare_pipeline,
)
from kto_pipeline.curate.redaction.rampart import ENTITIES as RAMPART_ENTITIES
from kto_pipeline.curate.redaction.rampart import rampart_recognizer
from kto_pipeline.curate.redaction.triggers import DIGITS, TRIGGERS

NLP_BATCH_SIZE = 64
_DIGIT_RUNS = "0123456789012345678909876543210987654321"


def trivial_number(value: str) -> bool:
    """A number nobody is identified by: one digit repeated ("111111") or a run of consecutive
    digits ("123456789", "987654321"), as in lists of common passwords and placeholder values."""
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) < 4 or len(digits) < sum(c.isalnum() for c in value):
        return False
    return len(set(digits)) == 1 or digits in _DIGIT_RUNS


def installed_spacy_model(config: RedactionConfig) -> str | None:
    """The spaCy NER pipeline to use: the configured one, else the largest installed one."""
    if not config.ner:
        return None
    if config.spacy_model:
        return config.spacy_model
    try:
        import spacy.util
    except ImportError:  # pragma: no cover - presidio depends on spaCy
        return None
    return next((m for m in SPACY_NER_MODELS if spacy.util.is_package(m)), None)


def offline_tldextract() -> None:
    # The e-mail recognizer's tldextract fetches the public suffix list on first use; the
    # snapshot bundled with tldextract is what an offline machine must use instead.
    import tldextract
    import tldextract.tldextract as te

    te.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class Engines:
    """Presidio analyzer and anonymizer built once per process."""

    def __init__(self, config: RedactionConfig, model_threads: int = 0):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        from kto_pipeline.curate.redaction.recognizers import build_recognizers, filter_results
        from kto_pipeline.curate.redaction.recognizers.words import allow_words_from_yaml

        offline_tldextract()
        model = installed_spacy_model(config)
        if model:
            nlp = nlp_configuration(model, config.ner_strength)
        else:
            nlp = {"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}
        nlp_engine = NlpEngineProvider(nlp_configuration=nlp).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        rampart = None
        if model:
            prepare_pipeline(nlp_engine)
            registry.remove_recognizer("SpacyRecognizer")
            for recognizer in [*ner_recognizers(), *name_form_recognizers()]:
                registry.add_recognizer(recognizer)
            rampart = (
                rampart_recognizer(
                    config.rampart_min_probability,
                    config.ner_strength if config.rampart_needs_context else None,
                    (*PERSON_CONTEXT, *LOCATION_CONTEXT),
                    model_threads,
                )
                if config.rampart
                else None
            )
            if rampart is not None:
                registry.add_recognizer(rampart)
        registry.remove_recognizer("PhoneRecognizer")  # ours wraps it: regions, reference numbers dropped
        for recognizer in build_recognizers(config.phone_regions, config.national_ids, config.recognizers_yaml):
            registry.add_recognizer(recognizer)
        self.allow_words = allow_words_from_yaml(config.recognizers_yaml) if config.recognizers_yaml else ()
        self.filter = filter_results
        self.analyzer = AnalyzerEngine(
            nlp_engine=nlp_engine,
            registry=registry,
            supported_languages=["en"],
            context_aware_enhancer=context_enhancer(),
        )
        self.anonymizer = AnonymizerEngine()
        self.anonymizer.add_anonymizer(entity_counter_operator())
        self.config = config
        self.ner = model is not None
        self.ner_model = model
        self.rampart = rampart
        model_entities = [*NER_ENTITIES, *(RAMPART_ENTITIES if self.ner and config.rampart and rampart else ())]
        self.entities = list(config.entities) + (list(dict.fromkeys(model_entities)) if self.ner else [])
        self.recognizers = sorted(
            {r.name for r in registry.recognizers if set(r.supported_entities) & set(self.entities)}
        )

    def candidates(self, text: str) -> list[str]:
        """The entity types `text` could hold (all of them without triggers); none for blank text."""
        if not text.strip():
            return []
        if not self.config.use_triggers:
            return self.entities
        digits = len(DIGITS.findall(text))
        return [e for e in self.entities if e not in TRIGGERS or TRIGGERS[e](text, digits)]

    def analyze(self, text: str, nlp_artifacts: Any = None, entities: list[str] | None = None) -> list:
        """Hits in `text` (`entities`: its candidate types, when the caller has them already)."""
        entities = self.candidates(text) if entities is None else entities
        if not entities:
            return []
        found = self.analyzer.analyze(
            text,
            language="en",
            entities=entities,
            score_threshold=self.config.score_threshold,
            nlp_artifacts=nlp_artifacts,
        )
        return [r for r in self.filter(text, found, self.allow_words) if not trivial_number(text[r.start : r.end])]

    def analyze_many(self, texts: Iterable[str]) -> dict[str, list]:
        """`analyze` of each distinct text; the spaCy pipeline runs once over all of them in
        batches (nlp.pipe), and Rampart too, which is where the models' cost goes."""
        candidates = {text: self.candidates(text) for text in dict.fromkeys(texts)}
        found: dict[str, list] = {text: [] for text in candidates}
        todo = [text for text, entities in candidates.items() if entities]
        if not self.ner:
            return found | {text: self.analyze(text, entities=candidates[text]) for text in todo}
        if self.rampart is not None:
            self.rampart.prepare([text for text in todo if set(candidates[text]) & set(RAMPART_ENTITIES)])
        try:
            batches = self.analyzer.nlp_engine.process_batch(todo, language="en", batch_size=NLP_BATCH_SIZE)
            for text, artifacts in batches:
                found[text] = self.analyze(text, artifacts, candidates[text])
        finally:
            if self.rampart is not None:
                self.rampart.forget()
        return found


@lru_cache(maxsize=1)
def entity_counter_operator():
    """Presidio's Operator class for typed, numbered placeholders, built on first use so that
    importing this module does not import Presidio."""
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


@lru_cache(maxsize=4)
def engines_for(config: RedactionConfig) -> Engines:
    return Engines(config)
