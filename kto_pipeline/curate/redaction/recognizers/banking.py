"""CREDIT_CARD and IBAN_CODE numbers Presidio's own recognizers miss."""

from __future__ import annotations

import regex
from presidio_analyzer import AnalysisExplanation, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import IbanRecognizer

from kto_pipeline.curate.redaction.recognizers.words import FLAGS, digits_of

# Issuer prefixes: Mir 2200–2204, Mastercard 2221–2720, and 3–6 (Amex, Visa, Mastercard, Maestro, Discover, ...).
_IIN = r"(?:2(?:20[0-4]|22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|[3-6]\d{3})"
_SEP = r"(?P<sep>[ .\-/_]|[ \t]{2,}|[ \t]?[-–][ \t]?|)"


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class CardRecognizer(PatternRecognizer):
    """CREDIT_CARD numbers Presidio's CreditCardRecognizer misses (its first group is 4/5[0-5]/6/3/1 and its
    separators a single space or dash): 2-series Mastercard and Mir, Maestro 56–58, 19-digit cards, and groups
    split by dots, slashes, underscores or several spaces. A hit scores 1.0 when the Luhn check passes."""

    PATTERNS = [
        Pattern(
            "card in groups of four",
            rf"(?<![\w.\-/]){_IIN}{_SEP}\d{{4}}(?:(?P=sep)\d{{4}}){{1,2}}(?:(?P=sep)\d{{1,4}})?(?![\w]|[.\-/]\d)",
            0.3,
        ),
        Pattern(
            "amex 4-6-5",
            r"(?<![\w.\-/])3[47]\d\d(?P<sep>[ .\-/_]|[ \t]{2,}|)\d{6}(?P=sep)\d{5}(?![\w]|[.\-/]\d)",
            0.3,
        ),
    ]

    def __init__(self, supported_language: str = "en"):
        super().__init__(
            supported_entity="CREDIT_CARD",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            global_regex_flags=FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool:
        d = digits_of(pattern_text)
        prefix = int(d[:4])
        two_series = prefix < 3000 and not (2200 <= prefix <= 2204 or 2221 <= prefix <= 2720)
        return 13 <= len(d) <= 19 and not two_series and _luhn(d)


class IbanTrailingWordRecognizer(IbanRecognizer):
    """IBAN_CODE where Presidio's IbanRecognizer loses it to the word after it.

    Why it misses: the registry compiles predefined recognizers with IGNORECASE, so the 4-character groups of its
    pattern, `(?:[ -]?[A-Z0-9]{4}){2,6}`, also match lower-case letters. When the IBAN's length is a multiple of
    four (BE, AT, ES, ...: "ES91 2100 0418 4502 0005 1332 please") or a word is glued on ("…0130 00please"), the
    first word's letters ("plea") are taken as one more group, and the fallback only tries the ends of the
    pattern's three capture groups, all of which keep those letters: every candidate fails the checksum.

    The fix takes the longest run of letters, digits, spaces and dashes that starts like an IBAN, and tries it
    cut ever shorter (never inside a run of digits) until Presidio's own check (mod 97 and the country's exact
    format) accepts it.
    """

    _CANDIDATE = regex.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,32}")

    def __init__(self, supported_language: str = "en"):
        super().__init__(supported_language=supported_language, exact_match=True)

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None, regex_flags=None) -> list:
        results = []
        for m in self._CANDIDATE.finditer(text):
            cand = m.group()
            for end in range(len(cand), 14, -1):
                if cand[end - 1] in " -" or (end < len(cand) and cand[end - 1].isdigit() and cand[end].isdigit()):
                    continue
                if self.validate_result(cand[:end].upper()) is True:
                    explanation = AnalysisExplanation(
                        recognizer=self.name, original_score=1.0, textual_explanation="IBAN checksum, word cut off"
                    )
                    metadata = {
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    }
                    results.append(
                        RecognizerResult("IBAN_CODE", m.start(), m.start() + end, 1.0, explanation, metadata)
                    )
                    break
        return results
