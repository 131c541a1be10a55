"""National IDs, chosen by name: US_SSN without separators, FR_NIR, DE_TAX_ID, IN_AADHAAR, IN_PAN, UK_NINO."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    DeTaxIdRecognizer,
    InAadhaarRecognizer,
    InPanRecognizer,
    UkNinoRecognizer,
)

from kto_pipeline.curate.redaction.entities import DEFAULT_NATIONAL_IDS  # noqa: F401 - re-exported
from kto_pipeline.curate.redaction.recognizers.context import ContextPatternRecognizer, WindowContext
from kto_pipeline.curate.redaction.recognizers.phones import digit_run
from kto_pipeline.curate.redaction.recognizers.words import FLAGS, digits_of

_SSN_CONTEXT = ("ssn", "ssns", "ssn#", "ss#", "ss no", "social security", "social sec", "soc sec")


def _ssn_invalid(text: str) -> bool:
    d = digits_of(text)
    return (
        d[:3] in ("000", "666")
        or d[0] == "9"
        or d[3:5] == "00"
        or d[5:] == "0000"
        or digit_run(d)
        or d in ("078051120", "219099999")
    )


def ssn_recognizer() -> ContextPatternRecognizer:
    """US_SSN as nine bare digits, only with "SSN" / "social security" before it (Presidio's needs spaCy context
    and then scores 0.4; this one also works without spaCy)."""
    pattern = Pattern("SSN without separators", r"(?<![\w.\-])\d{9}(?![\w]|[.\-]\d)", 0.3)
    return ContextPatternRecognizer(
        "US_SSN", "UsSsnNoSeparatorRecognizer", [pattern], _SSN_CONTEXT, invalid=_ssn_invalid
    )


class FrNirRecognizer(PatternRecognizer):
    """FR_NIR, the French INSEE / social security number: sex, year, month, department (2A/2B for Corsica),
    commune, order, and a key that must equal 97 - (first 13 digits mod 97); a valid key scores 1.0."""

    PATTERNS = [
        Pattern(
            "NIR",
            r"(?<![\w.\-])[1-478][ \t]?\d\d[ \t]?(?:0[1-9]|1[0-2]|[2-9]\d)[ \t]?(?:\d\d|2[ab])[ \t]?\d{3}[ \t]?\d{3}"
            r"[ \t]?\d\d(?![\w]|[.\-]\d)",
            0.5,
        )
    ]
    CONTEXT = ["sécurité sociale", "securite sociale", "sécu", "secu", "nir", "insee", "social security"]

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entity="FR_NIR",
            patterns=self.PATTERNS,
            context=self.CONTEXT,
            supported_language=supported_language,
            global_regex_flags=FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool:
        s = "".join(pattern_text.split()).upper()
        body = s[:5] + {"2A": "19", "2B": "18"}.get(s[5:7], s[5:7]) + s[7:13]
        return body.isdigit() and 97 - int(body) % 97 == int(s[13:])


class SteuerIdRecognizer(WindowContext, DeTaxIdRecognizer):
    """DE_TAX_ID, the German Steuer-ID: Presidio's check digit (ISO 7064 MOD 11,10) and the issuing rule (among the
    first ten digits exactly one repeats, twice or three times, never three in a row), which together pass about
    one random 11-digit number in 280. Written 2-3-3-3 it scores 0.6, eleven bare digits 0.4 (at the threshold:
    order and phone numbers look alike), either 0.85 after "Steuer-ID", "tax ID", ..."""

    PATTERNS = [
        Pattern("Steuer-ID, 11 digits", r"(?<![\w.\-])[1-9]\d{10}(?![\w]|[.\-]\d)", 0.4),
        Pattern("Steuer-ID, 2-3-3-3", r"(?<![\w.\-])[1-9]\d[ \t]\d{3}[ \t]\d{3}[ \t]\d{3}(?![\w]|[ \t.\-]\d)", 0.6),
    ]
    CONTEXT = (
        "steuer-id", "steuerid", "steuer id", "steuer-idnr", "idnr", "steueridentifikationsnummer",
        "steuerliche identifikationsnummer", "identifikationsnummer", "tax id", "tax identification number",
        "tin", "bzst",
    )  # fmt: skip

    def __init__(self, supported_language: str = "en"):
        super().__init__(patterns=self.PATTERNS, context=list(self.CONTEXT), supported_language=supported_language)
        self.global_regex_flags = FLAGS
        self._init_window(self.CONTEXT, required=False)

    def validate_result(self, pattern_text: str) -> bool | None:
        d = digits_of(pattern_text)
        counts = sorted(Counter(d[:10]).values(), reverse=True)
        if counts[0] not in (2, 3) or counts[1] != 1 or regex.search(r"(\d)\1\1", d[:10]):
            return False
        return None if super().validate_result(d) else False


class AadhaarRecognizer(WindowContext, InAadhaarRecognizer):
    """IN_AADHAAR with Presidio's Verhoeff check. Written 4-4-4 it scores 0.6 (not inside a longer digit group, so
    not the first twelve digits of a card); twelve bare digits (FedEx tracking, order numbers) need "Aadhaar"."""

    PATTERNS = [
        Pattern("Aadhaar, 12 digits", r"(?<![\w.\-])[2-9]\d{11}(?![\w]|[.\-]\d)", 0.3),
        Pattern(
            "Aadhaar, 4-4-4",
            r"(?<![\w.\-/]|\d[ \-])[2-9]\d{3}(?P<sep>[ \-])\d{4}(?P=sep)\d{4}(?![\w]|[ \-.]\d)",
            0.6,
        ),
    ]
    CONTEXT = ("aadhaar", "aadhar", "adhaar", "uidai", "uid")

    def __init__(self, supported_language: str = "en"):
        super().__init__(patterns=self.PATTERNS, context=list(self.CONTEXT), supported_language=supported_language)
        self.global_regex_flags = FLAGS
        self._init_window(self.CONTEXT, required=False)

    def validate_result(self, pattern_text: str) -> bool | None:
        return None if super().validate_result(pattern_text) else False


class PanRecognizer(WindowContext, InPanRecognizer):
    """IN_PAN with Presidio's two PAN patterns (0.5 for the holder-type letter, 0.1 otherwise, raised by "PAN");
    its third, any ten characters with four digits, is left out."""

    CONTEXT = ("pan", "pan card", "pan no", "permanent account number", "income tax")

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            patterns=InPanRecognizer.PATTERNS[:2], context=list(self.CONTEXT), supported_language=supported_language
        )
        self.global_regex_flags = FLAGS
        self._init_window(self.CONTEXT, required=False)


NATIONAL_IDS: dict[str, Callable[[], EntityRecognizer]] = {
    "FR_NIR": FrNirRecognizer,
    "DE_TAX_ID": SteuerIdRecognizer,
    "IN_AADHAAR": AadhaarRecognizer,
    "IN_PAN": PanRecognizer,
    "UK_NINO": lambda: UkNinoRecognizer(supported_language="en"),
}
