"""`build_recognizers`: every recognizer of the package, and those of a YAML file in Presidio's format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from presidio_analyzer import EntityRecognizer, RecognizerRegistry

from kto_pipeline.curate.redaction.entities import (  # noqa: F401 - re-exported
    DEFAULT_NATIONAL_IDS,
    DEFAULT_PHONE_REGIONS,
    RULE_ENTITIES,
)
from kto_pipeline.curate.redaction.recognizers.addresses import (
    postcode_context_recognizer,
    street_context_recognizer,
    street_recognizer,
)
from kto_pipeline.curate.redaction.recognizers.banking import CardRecognizer, IbanTrailingWordRecognizer
from kto_pipeline.curate.redaction.recognizers.dates import dob_recognizer
from kto_pipeline.curate.redaction.recognizers.names import NameCueRecognizer
from kto_pipeline.curate.redaction.recognizers.national_ids import NATIONAL_IDS, ssn_recognizer
from kto_pipeline.curate.redaction.recognizers.phones import phone_recognizer
from kto_pipeline.curate.redaction.recognizers.words import DEFAULT_YAML, allow_words_from_yaml, yaml_file


def yaml_recognizers(path: str | Path) -> list[EntityRecognizer]:
    """The recognizers of a YAML file in Presidio's format, through `RecognizerRegistry.add_recognizers_from_yaml`
    (none when it has no `recognizers` list, e.g. a file with `allow_words` only)."""
    if not yaml_file(str(path)).get("recognizers"):
        return []
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizers_from_yaml(str(path))
    return list(registry.recognizers)


def build_recognizers(
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    national_ids: Sequence[str] = DEFAULT_NATIONAL_IDS,
    extra_yaml: str | None = None,
) -> list[EntityRecognizer]:
    """Every recognizer of this module, ready for `RecognizerRegistry.add_recognizer` (language "en").

    The phone recognizer replaces Presidio's PhoneRecognizer (remove that one); `extra_yaml` is a deployment's own
    YAML (recognizers and `allow_words`, which the name cues then skip as well).
    """
    unknown = sorted(set(national_ids) - set(NATIONAL_IDS))
    if unknown:
        raise ValueError(f"unknown national IDs {unknown}; known: {sorted(NATIONAL_IDS)}")
    extra_allow = allow_words_from_yaml(extra_yaml) if extra_yaml else ()
    recognizers: list[EntityRecognizer] = [
        *yaml_recognizers(DEFAULT_YAML),
        street_recognizer(),
        street_context_recognizer(),
        postcode_context_recognizer(),
        NameCueRecognizer(allow_words=extra_allow),
        phone_recognizer(phone_regions),
        CardRecognizer(),
        ssn_recognizer(),
        IbanTrailingWordRecognizer(),
        dob_recognizer(),
        *(NATIONAL_IDS[name]() for name in national_ids),
    ]
    if extra_yaml:
        recognizers += yaml_recognizers(extra_yaml)
    return recognizers
