"""DATE_OF_BIRTH: a date, numeric or written (English, German, French months), next to a birth word."""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern

from kto_pipeline.curate.redaction.recognizers.context import ContextPatternRecognizer
from kto_pipeline.curate.redaction.recognizers.words import alternation

_MONTHS = alternation(
    "january february march april may june july august september october november december jan feb mar apr jun"
    " jul aug sept sep oct nov dec januar jänner februar märz maerz mai juni juli oktober dezember janvier février"
    " fevrier mars avril juin juillet août aout septembre octobre novembre décembre decembre".split()
)
_DOB_CONTEXT = (
    "born", "birth", "dob", "d.o.b", "d.o.b.", "date of birth", "birthdate", "birth date", "birthday", "bday",
    "b-day", "geboren", "geb.", "geburtsdatum", "geburtstag", "né", "née", "né le", "née le", "date de naissance",
    "naissance", "fecha de nacimiento", "data di nascita",
)  # fmt: skip
_NUMERIC_DATE = regex.compile(r"(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})")


def _implausible_date(text: str) -> bool:
    m = _NUMERIC_DATE.fullmatch(text.strip())
    if not m:
        return False
    a, b, c = (int(g) for g in m.groups())
    if len(m.group(1)) == 4:
        return not (1900 <= a <= 2030 and 1 <= b <= 12 and 1 <= c <= 31)
    if len(m.group(3)) == 4 and not 1900 <= c <= 2030:
        return True
    return not ((1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31))


def dob_recognizer() -> ContextPatternRecognizer:
    """DATE_OF_BIRTH: a date (12/03/1985, 1985-03-12, 12.03.1985, 12 March 1985, March 12th, 1985, 1er mars 1985)
    within 48 characters after a birth word or 24 before one, in the same sentence."""
    day = r"\d{1,2}(?:st|nd|rd|th|er|\.)?"
    patterns = [
        Pattern(
            "numeric date",
            r"(?<![\w./-])(?:\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2})(?![\w]|[./-]\d)",
            0.3,
        ),
        Pattern("day month [year]", rf"\b{day}\s+(?:of\s+)?(?:{_MONTHS})\.?(?:,?\s+(?:\d{{4}}|'\d\d))?(?!\w)", 0.3),
        Pattern("month day[, year]", rf"\b(?:{_MONTHS})\.?\s+{day}(?:,?\s+\d{{4}})?(?!\w)", 0.3),
        Pattern("month year", rf"\b(?:{_MONTHS})\.?\s+\d{{4}}(?!\w)", 0.3),
    ]
    return ContextPatternRecognizer(
        "DATE_OF_BIRTH", "DateOfBirthRecognizer", patterns, _DOB_CONTEXT, after=24, invalid=_implausible_date
    )
