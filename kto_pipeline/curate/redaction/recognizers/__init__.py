"""Rule recognizers for the PII Presidio's predefined recognizers miss, and a filter for what they over-find.

`build_recognizers` returns Presidio recognizers (language "en") to add to a `RecognizerRegistry`:

  STREET_ADDRESS  street lines with an optional unit: US/UK ("1600 Pennsylvania Ave NW", "221B Baker Street",
                  "42 Elm St., Apt 5", "Flat 3, 12 Mill Road"), German ("Hauptstraße 5", "Müllerstr. 12a",
                  "Am Markt 3, 2. OG"), French ("12 rue de la Paix", "3 bis avenue des Champs-Élysées")
  POSTCODE        UK postcodes in capitals; a US ZIP(+4) after a state or with "zip"; five German/French digits
                  next to a large city, after a street line, or with "PLZ"/"code postal"
  DATE_OF_BIRTH   a date, numeric or written (en/de/fr months), with "born", "DOB", "birthday", "geboren", "né le"
  PERSON          a name after a cue, lower case included: "my name is", "i'm", "this is", "dear", "hi <name>,",
                  "call me", sign-offs ("regards,", "cheers,", "— <name>"), and capitalised names in requests
                  ("cc Daiki Watanabe on this", "let Tunde know"); not "i'm fine", "this is broken"
  PHONE_NUMBER    Presidio's PhoneRecognizer for the given regions, without reference numbers ("invoice number
                  2023456789") and digit runs ("123456789")
  CREDIT_CARD     what Presidio's CreditCardRecognizer skips: Mastercard 2221–2720, Mir, Maestro 56–58, 19 digits,
                  dots or double spaces between groups; Luhn-checked
  US_SSN          nine digits without separators, next to "SSN" / "social security" only
  IBAN_CODE       an IBAN followed by a word (`IbanTrailingWordRecognizer` says why Presidio's misses it)
  FR_NIR, DE_TAX_ID, IN_AADHAAR, IN_PAN, UK_NINO   national IDs, chosen by name (`NATIONAL_IDS`)

`filter_results` then drops hits that are not personal: loopback/private/reserved IPs and version strings
("1.2.3.4") as IP_ADDRESS; URLs without personal data in them (public links, bare domains, code such as app.run
or os.path.join); PERSON/LOCATION hits on product and tool names (`allow_words` in the YAML, extendable) or on
common words at the start of a sentence ("Broken", "Email"); numbers labelled as a reference ("order #…").

Context is read from the raw text (`WindowContext`, context.py), not from spaCy lemmas: whole words, within a
window of characters before (and for some after) the hit, in the same sentence, or an adjacent hit of a related
type (a postcode right after a street line). It works with the no_op NLP engine too. A hit that needs context is
dropped without it; every hit is marked as context-scored, so Presidio's enhancer leaves it alone.

Scores. Street lines score 0.9, above spaCy's NER score (0.85 at most), and postcodes 0.7: Presidio's
anonymizer keeps the higher-scored of two hits on the same span and drops a hit contained in another, so an
address wins over a LOCATION inside it; `filter_results` also merges a LOCATION that only overlaps an address
into it (the anonymizer would keep both and garble the text). Checksum-validated hits (cards, IBAN, NIR) score
1.0; hits found through context score 0.85 (0.75 for phones, as Presidio's own phone context gives); a hit
that context could not confirm stays below the redaction threshold (0.4) where that is the point (twelve bare
digits as an Aadhaar), or at it where the checks leave few look-alikes (eleven bare digits as a Steuer-ID).

YAML. Declarative recognizers use Presidio's own format, loaded with `RecognizerRegistry.add_recognizers_from_yaml`
(German street forms and postcodes are in `default_recognizers.yaml`); a deployment adds its own (order and
customer IDs) the same way, with `build_recognizers(..., extra_yaml=path)`, and may list `allow_words` in the
same file for `filter_results` (`allow_words_from_yaml`). Regexes are compiled with IGNORECASE; `(?-i:...)`
makes a part case-sensitive. The entity types it declares must be among the entities the analyzer is asked for:

    recognizers:
      - name: OrderIdRecognizer
        supported_language: en
        supported_entity: ORDER_ID
        patterns:
          - name: order id
            regex: '\\bORD-\\d{8}\\b'
            score: 0.9
        context: [order]          # Presidio's context words (read from spaCy lemmas, +0.35)
    allow_words: [Acme, AcmeCloud, Ava]

Layout: words.py (the YAML's word lists, regex helpers), context.py, names.py, phones.py, banking.py (cards,
IBAN), dates.py, addresses.py, national_ids.py (with the bare-digit US SSN), build.py, filter.py.
"""

from kto_pipeline.curate.redaction.recognizers.addresses import (
    postcode_context_recognizer,
    street_context_recognizer,
    street_recognizer,
)
from kto_pipeline.curate.redaction.recognizers.banking import CardRecognizer, IbanTrailingWordRecognizer
from kto_pipeline.curate.redaction.recognizers.build import RULE_ENTITIES, build_recognizers, yaml_recognizers
from kto_pipeline.curate.redaction.recognizers.context import ContextPatternRecognizer, WindowContext
from kto_pipeline.curate.redaction.recognizers.dates import dob_recognizer
from kto_pipeline.curate.redaction.recognizers.filter import filter_results, personal_ip, personal_url
from kto_pipeline.curate.redaction.recognizers.names import NameCueRecognizer
from kto_pipeline.curate.redaction.recognizers.national_ids import (
    DEFAULT_NATIONAL_IDS,
    NATIONAL_IDS,
    AadhaarRecognizer,
    FrNirRecognizer,
    PanRecognizer,
    SteuerIdRecognizer,
    ssn_recognizer,
)
from kto_pipeline.curate.redaction.recognizers.phones import (
    DEFAULT_PHONE_REGIONS,
    ContextPhoneRecognizer,
    phone_recognizer,
    reference_label_before,
)
from kto_pipeline.curate.redaction.recognizers.words import DEFAULT_YAML, allow_words_from_yaml, common_words

__all__ = [
    "DEFAULT_NATIONAL_IDS",
    "DEFAULT_PHONE_REGIONS",
    "DEFAULT_YAML",
    "NATIONAL_IDS",
    "RULE_ENTITIES",
    "AadhaarRecognizer",
    "CardRecognizer",
    "ContextPatternRecognizer",
    "ContextPhoneRecognizer",
    "FrNirRecognizer",
    "IbanTrailingWordRecognizer",
    "NameCueRecognizer",
    "PanRecognizer",
    "SteuerIdRecognizer",
    "WindowContext",
    "allow_words_from_yaml",
    "build_recognizers",
    "common_words",
    "dob_recognizer",
    "filter_results",
    "personal_ip",
    "personal_url",
    "phone_recognizer",
    "postcode_context_recognizer",
    "reference_label_before",
    "ssn_recognizer",
    "street_context_recognizer",
    "street_recognizer",
    "yaml_recognizers",
]
