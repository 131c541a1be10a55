"""STREET_ADDRESS in US/UK and French forms, and POSTCODE where context anchors it (the German street forms and
the self-anchored postcodes are declarative, in default_recognizers.yaml)."""

from __future__ import annotations

from functools import lru_cache

from presidio_analyzer import Pattern, PatternRecognizer

from kto_pipeline.curate.redaction.recognizers.context import ContextPatternRecognizer
from kto_pipeline.curate.redaction.recognizers.words import FLAGS, alternation, common_words

STREET_SCORE = 0.9  # above spaCy's 0.85: the address wins a tie with LOCATION

# Words that are never part of a US/UK street name between the house number and the street type: "3 hours
# road closed", "20 dollars to the street vendor", "2 days on main street" are not addresses.
_STREET_STOP = alternation(
    "the a an and or of on in at to for from by with my your our their his her its is are was were be been am it"
    " this that these those i we you he she they me us them not no yes but if so as than then via per about after"
    " before over under up down off out into onto ago last next more less very just also only still even again here"
    " there now today tomorrow yesterday day days week weeks month months year years hour hours minute minutes min"
    " mins second seconds sec secs time times item items order orders unit units pcs piece pieces people person"
    " persons kid kids user users dollar dollars euro euros pounds usd eur gbp mile miles km kms meters metres feet ft"
    " gb mb tb kb percent x please thanks new old".split()
)
_STREET_TOKEN = rf"(?:(?!(?:{_STREET_STOP})(?![\w'’-]))[^\W\d_][\w'’]*(?:-[\w'’]+)*|\d{{1,3}}(?:st|nd|rd|th))"
_STRONG_TYPES = (
    "street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|parkway|pkwy|highway|hwy|terrace|crescent|cres|mews"
    "|plaza|expressway|expy|freeway|fwy|turnpike|causeway"
)
# English words too ("2 external drive", "the 3 easy way"): capitalised, or with an address word nearby.
_WEAK_TYPES = (
    "drive|dr|way|row|hill|walk|path|loop|close|place|pl|court|ct|square|sq|circle|cir|trail|trl|grove|green|park"
    "|gardens|gdns|gate|view|rise|parade|quay|wharf|alley|crossing|point|ridge|run|pike|heights|hts|vale|yard"
    "|meadow|meadows|common"
)
_NOT_STREET_NAME = r"(?!(?-i:Google|One|Hard|External|USB|Shared|Network|Flash|Cloud|Team|My|The|Your|Our|This|That))"
_HOUSE = (
    r"(?<![\w.\-/$€£])(?:(?:flat|apartment|apt|unit|suite)[ \t]*\d{1,4}[a-z]?,?[ \t]+)?"
    r"\d{1,5}[a-z]?(?:[ \t]?[-–][ \t]?\d{1,5}[a-z]?)?"
)
_DIRECTION = r"(?:[ \t]+(?:(?-i:NE|NW|SE|SW|N|S|E|W)|ne|nw|se|sw)\.?(?!\w))?"
_UNIT = (
    r"(?:,?[ \t]*(?:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|bldg|building|\#)\.?[ \t]*\#?[ \t]*"
    r"[a-z]?\d{1,5}[a-z]?(?!\w))?"
)
_FR_NUM = r"(?<![\w.\-/$€£])\d{1,4}(?:[ \t]?(?:bis|ter|quater)(?!\w)|[a-d](?!\w))?,?"
_FR_ARTICLE = r"(?:(?:de[ \t]+la|de[ \t]+l['’]|des|du|de|d['’]|la|le|les|l['’])[ \t]*)"
_FR_TAIL = r"[\w'’]*(?:-[\w'’]+)*"
_FR_WORD = r"[^\W\d_]" + _FR_TAIL
_FR_UNIT = (
    r"(?:,?[ \t]*(?:appartement|appart|appt|apt|bâtiment|batiment|bât|bat|étage|etage|escalier|esc|porte"
    r"|résidence|residence)\.?[ \t]*[a-z0-9]{1,4}(?!\w))?"
)
_DE_NUMBER = r"[ \t]+\d{1,3}(?:[ \t]?[a-z](?!\w))?(?!\w)"
_ADDRESS_CONTEXT = (
    "address", "addr", "ship", "shipped", "shipping", "deliver", "delivered", "delivery", "live", "living", "lives",
    "moved", "move", "send", "sent", "billing", "mailing", "postal", "reside", "located", "residence", "my place",
    "home", "adresse", "wohne", "wohnhaft", "lieferadresse", "anschrift", "habite", "livraison", "domicile",
)  # fmt: skip


@lru_cache(maxsize=1)
def _fr_next() -> str:
    # Further words of a French street name: any word but a stop word or a common one, so a lower-case
    # "12 rue pasteur thanks" stops before "thanks".
    common = alternation(common_words())
    return (
        rf"(?:[ \t]+(?:(?:de|du|des|la|le|les|et|sur|en|sous|d['’]|l['’])[ \t]*)?"
        rf"(?!(?:{common})(?![\w'’-])){_FR_WORD}){{0,3}}"
    )


def street_recognizer() -> PatternRecognizer:
    """STREET_ADDRESS in US/UK and French forms (the German ones are in the YAML), scored 0.9."""
    fr_types = r"rue|boulevard|bd|bld|avenue|av\.|impasse|chemin|allée|allee|quai|faubourg|fbg|lotissement|hameau"
    fr_types += r"|sentier|rond-point|ruelle|cité|cite"
    fr_ambiguous = r"place|pl\.|route|rte|square|passage|cours|promenade|esplanade|voie"
    patterns = [
        Pattern(
            "us/uk street line",
            rf"{_HOUSE}[ \t]+(?:{_STREET_TOKEN}[ \t]+){{1,3}}?(?:{_STRONG_TYPES})(?!\w)\.?{_DIRECTION}{_UNIT}",
            STREET_SCORE,
        ),
        Pattern(
            "us/uk street line, capitalised",
            rf"{_HOUSE}[ \t]+{_NOT_STREET_NAME}(?-i:(?:[A-Z][\w'’]*(?:-[\w'’]+)*[ \t]+){{1,3}}?(?:"
            + "|".join(t.capitalize() for t in _WEAK_TYPES.split("|"))
            + rf"))(?!\w)\.?{_DIRECTION}{_UNIT}",
            STREET_SCORE,
        ),
        Pattern(
            "french street line",
            rf"{_FR_NUM}[ \t]+(?:{fr_types})[ \t]+{_FR_ARTICLE}?{_FR_WORD}{_fr_next()}{_FR_UNIT}",
            STREET_SCORE,
        ),
        # "place", "route", "square" are English too: an article or a capital after them.
        Pattern(
            "french street line, ambiguous type",
            rf"{_FR_NUM}[ \t]+(?:{fr_ambiguous})[ \t]+(?:{_FR_ARTICLE}{_FR_WORD}|(?-i:[A-ZÀ-ÖØ-Þ]){_FR_TAIL})"
            rf"{_fr_next()}{_FR_UNIT}",
            STREET_SCORE,
        ),
    ]
    return PatternRecognizer(
        supported_entity="STREET_ADDRESS", name="StreetAddressRecognizer", patterns=patterns, global_regex_flags=FLAGS
    )


def street_context_recognizer() -> ContextPatternRecognizer:
    """STREET_ADDRESS in forms that read as ordinary words in lower case ("42 oak drive", "am rosengarten 5",
    "2 place bellecour"): only with an address word ("ship to", "address", "I live", "adresse") before it."""
    patterns = [
        Pattern(
            "us/uk street line, any case",
            rf"{_HOUSE}[ \t]+{_NOT_STREET_NAME}(?:{_STREET_TOKEN}[ \t]+){{1,3}}?(?:{_WEAK_TYPES})(?!\w)\.?"
            rf"{_DIRECTION}{_UNIT}",
            STREET_SCORE,
        ),
        Pattern(
            "german preposition street, any case",
            r"(?<![\w-])(?:am|an[ \t]+der|an[ \t]+den|auf[ \t]+dem|auf[ \t]+der|im|in[ \t]+der|zum|zur|unter[ \t]+den)"
            rf"[ \t]+[^\W\d_][\w-]+{_DE_NUMBER}",
            STREET_SCORE,
        ),
        Pattern(
            "french street line, any case",
            rf"{_FR_NUM}[ \t]+(?:place|pl\.|route|rte|square|passage|cours|promenade|esplanade|voie)[ \t]+"
            rf"{_FR_ARTICLE}?{_FR_WORD}{_fr_next()}{_FR_UNIT}",
            STREET_SCORE,
        ),
    ]
    return ContextPatternRecognizer(
        "STREET_ADDRESS", "StreetAddressContextRecognizer", patterns, _ADDRESS_CONTEXT, before=64, context_score=0.9
    )


# ---------------------------------------------------------------------------------------------- POSTCODE
_POSTCODE_CONTEXT = (
    "zip", "zipcode", "zip code", "postal code", "postcode", "post code", "plz", "postleitzahl", "code postal",
)  # fmt: skip


def postcode_context_recognizer() -> ContextPatternRecognizer:
    """POSTCODE without a city or state to anchor it: five digits (or ZIP+4), or a UK postcode in any case, after
    "zip", "postcode", "PLZ", "code postal", or right after a street line ("…Ave NW, Washington, DC 20500")."""
    patterns = [
        Pattern("five digits / ZIP+4", r"(?<![\w.,\-$€£])\d{5}(?:-\d{4})?(?![\w]|[.,\-]\d)", 0.3),
        Pattern(
            "uk postcode, any case",
            r"(?<![\w-])(?:[a-pr-uwyz][0-9][0-9a-hjkpstuw]?|[a-pr-uwyz][a-hk-y][0-9][0-9abehmnprvwxy]?)"
            r"[ \t]?[0-9][abd-hjlnp-uw-z]{2}(?![\w-])",
            0.3,
        ),
    ]
    return ContextPatternRecognizer(
        "POSTCODE",
        "PostcodeContextRecognizer",
        patterns,
        _POSTCODE_CONTEXT,
        before=32,
        context_score=0.7,
        related=("STREET_ADDRESS",),
    )
