"""Cheap pre-checks: a text can only hold an entity when it holds the entity's trigger."""

from __future__ import annotations

import re
from typing import Any

from kto_pipeline.curate.redaction.entities import RULE_ENTITIES

# A text can only hold an entity when it holds the entity's trigger. Each trigger is a
# superset of the recognizer's own patterns (checked against Presidio's in the tests).
DIGITS = re.compile(r"\d")
TRIGGERS: dict[str, Any] = {
    "EMAIL_ADDRESS": lambda t, d: "@" in t,
    "PHONE_NUMBER": lambda t, d: d >= 7,
    "CREDIT_CARD": lambda t, d: d >= 12,
    "IBAN_CODE": lambda t, d: d >= 2 and _IBAN_HINT.search(t) is not None,
    "IP_ADDRESS": lambda t, d: (d >= 1 and "." in t) or ":" in t,
    "URL": lambda t, d: _URL_HINT.search(t) is not None,
    "US_SSN": lambda t, d: d >= 9,
    "US_ITIN": lambda t, d: d >= 9,
    "US_BANK_NUMBER": lambda t, d: d >= 8,
    "US_PASSPORT": lambda t, d: d >= 8,
    "US_DRIVER_LICENSE": lambda t, d: d >= 1,
    "MEDICAL_LICENSE": lambda t, d: d >= 7,
    "UK_NHS": lambda t, d: d >= 10,
    "CRYPTO": lambda t, d: _CRYPTO_HINT.search(t) is not None,
    "MAC_ADDRESS": lambda t, d: d >= 1 and (":" in t or "-" in t or "." in t),
    # A name, a place or a street needs a letter: answers like "68" never reach the NER models.
    **dict.fromkeys(("PERSON", "LOCATION", "STREET_ADDRESS"), lambda t, d: _LETTERS.search(t) is not None),
    # Every other type our rule recognizers add holds a digit (recognizers/).
    **dict.fromkeys((e for e in RULE_ENTITIES if e != "STREET_ADDRESS"), lambda t, d: d >= 1),
}
_LETTERS = re.compile(r"[^\W\d_]")
_IBAN_HINT = re.compile(r"[A-Za-z]{2}\s?\d{2}")
_URL_HINT = re.compile(r"[\w-]\.[A-Za-z]{2,}|://")
_CRYPTO_HINT = re.compile(r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[a-z0-9]{20,})")
