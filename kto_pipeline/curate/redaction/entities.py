"""The entity types redaction looks for, and the default regions and national IDs: plain data,
importable without Presidio or spaCy (the code location reads them when it loads)."""

from __future__ import annotations

# Presidio's pattern-based entities that are PII. DATE_TIME and UUID are left out by default:
# they are not personal, and redacting them would damage the training text.
PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "US_SSN",
    "US_ITIN",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "MEDICAL_LICENSE",
    "UK_NHS",
    "CRYPTO",
    "MAC_ADDRESS",
)
# The types our rule recognizers (recognizers/) add.
RULE_ENTITIES: tuple[str, ...] = (
    "STREET_ADDRESS",
    "POSTCODE",
    "DATE_OF_BIRTH",
    "FR_NIR",
    "DE_TAX_ID",
    "IN_AADHAAR",
    "IN_PAN",
    "UK_NINO",
)
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "BR")
DEFAULT_NATIONAL_IDS: tuple[str, ...] = ("FR_NIR", "DE_TAX_ID", "IN_AADHAAR", "IN_PAN", "UK_NINO")
