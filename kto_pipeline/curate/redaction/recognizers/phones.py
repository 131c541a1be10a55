"""PHONE_NUMBER: Presidio's PhoneRecognizer for a set of regions, with context read from the text and without
reference numbers, digit runs and numbers that read as decimals, dates or issue numbers."""

from __future__ import annotations

from collections.abc import Sequence

import regex
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from kto_pipeline.curate.redaction.entities import DEFAULT_PHONE_REGIONS
from kto_pipeline.curate.redaction.recognizers.context import WindowContext
from kto_pipeline.curate.redaction.recognizers.words import FLAGS, digits_of

# phonenumbers runs one matcher per region. Measured on ~950 support-chat texts with Presidio's recognizers and
# these: 2 regions 1.1 ms a text, these 10 1.65 ms, 18 2.1 ms (about 0.07 ms a region), against 5.6 ms for the
# spaCy pipeline; a single digit-heavy message costs 0.5-0.9 ms a region. CA is left out (US matches every +1
# number); IE, AT, CH, BE, PL, ... cost the same each. DE accepts local numbers from four digits: the recognizer
# drops matches under seven digits.

_PHONE_CUES = (
    "phone", "telephone", "tel", "tél", "mobile", "cell", "cellphone", "handy", "telefon", "téléphone",
    "portable", "call", "ring", "text", "sms", "whatsapp", "viber", "reach", "contact", "fax", "landline",
    "number", "ph",
)  # fmt: skip
# A number right after one of these labels is a reference, not a phone ("invoice number 2023456789",
# "Order #12345678", "my password was 123456789"). Not "account", "customer", "policy": those are personal.
_REFERENCE_BEFORE = regex.compile(
    r"(?<![^\W_])(?:invoice|inv|order|ticket|case|tracking|reference|ref|transaction|txn|receipt|confirmation"
    r"|booking|reservation|po|rma|sku|item|serial|s/n|sn|part|model|batch|lot|shipment|parcel|package|build"
    r"|version|ver|passwords?|passcode|pin|otp|pwd|pw|code|coupon|voucher|promo|licen[cs]e|key)"
    r"(?:[\s#:.\-]*(?:number|num|no|nr|n°|#|id|code|ref)(?![^\W_]))?[\s#:.\-]*(?:(?:is|was|are|were|=)\s*)?$",
    FLAGS,
)


def reference_label_before(text: str, start: int) -> bool:
    """Whether the number at `start` is labelled as an order, invoice, ticket, password, ... number."""
    return _REFERENCE_BEFORE.search(text[max(0, start - 40) : start]) is not None


_NOT_A_PHONE = regex.compile(r"\d+\.\d+|.*\d{4}-\d\d-\d\d.*|.*\.\..*")


def _implausible_phone(text: str, start: int, end: int) -> bool:
    """A phonenumbers match that reads as something else: under seven digits (German local numbers are valid
    from four: "#1693"), a decimal ("16.8924"), a date, a version range ("3.4.6...3.4.7"), an issue number."""
    digits = digits_of(text[start:end])
    return (
        len(digits) < 7
        or digit_run(digits)
        or _NOT_A_PHONE.fullmatch(text[start:end]) is not None
        or (start > 0 and text[start - 1] in "#=.v/-_")
    )


def digit_run(digits: str) -> bool:
    """Password-like digits: one or two distinct digits, or a straight run up or down ("123456789")."""
    return len(set(digits)) <= 2 or digits in "01234567890123456789" or digits in "98765432109876543210"


class ContextPhoneRecognizer(WindowContext, PhoneRecognizer):
    """Presidio's PhoneRecognizer (phonenumbers, national formats of `supported_regions`) with its context read
    from the text: 0.4 alone, 0.75 after "call", "mobile", "whatsapp", ...; reference numbers, digit runs and
    matches that read as decimals, dates or issue numbers are dropped."""

    def __init__(self, supported_regions: Sequence[str] = DEFAULT_PHONE_REGIONS, supported_language: str = "en"):
        super().__init__(
            context=list(_PHONE_CUES), supported_language=supported_language, supported_regions=tuple(supported_regions)
        )
        self._init_window(_PHONE_CUES, required=False, before=40, context_score=0.75)

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        return [
            r
            for r in super().analyze(text, entities, nlp_artifacts)
            if not _implausible_phone(text, r.start, r.end) and not reference_label_before(text, r.start)
        ]


def phone_recognizer(regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> PhoneRecognizer:
    """Presidio's PhoneRecognizer for `regions` (ISO codes, "GB" not "UK"), with context and reference checks."""
    return ContextPhoneRecognizer(supported_regions=regions)
