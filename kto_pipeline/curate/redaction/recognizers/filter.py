"""`filter_results`: drop hits that are not personal data (private IPs, version strings, public links, code,
product names, common words at a sentence start, labelled reference numbers) and settle NER hits on addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

import regex
from presidio_analyzer import RecognizerResult

from kto_pipeline.curate.redaction.recognizers.names import NameCueRecognizer
from kto_pipeline.curate.redaction.recognizers.phones import reference_label_before
from kto_pipeline.curate.redaction.recognizers.words import FLAGS, allow_set, common_words

_NER_TYPES = ("PERSON", "LOCATION")
_CUE_NAME = NameCueRecognizer.__name__
# Types whose look-alikes are reference numbers: dropped when labelled as an order, invoice, ticket, ... number.
_LOOKALIKES = frozenset(
    {"PHONE_NUMBER", "UK_NHS", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_PASSPORT", "MEDICAL_LICENSE", "US_ITIN"}
    | {"US_SSN", "DE_TAX_ID", "IN_AADHAAR"}
)
_NOT_IN_A_NAME = ("://", "www.", "/", "\\", "=", "(", "{", "<")  # nor, in a PERSON, digits
_WORD = regex.compile(r"[^\W\d_][\w'’.-]*")
_PUBLIC_RESOLVERS = frozenset(
    "8.8.8.8 8.8.4.4 1.1.1.1 1.0.0.1 9.9.9.9 149.112.112.112 208.67.222.222 208.67.220.220 2001:4860:4860::8888"
    " 2001:4860:4860::8844 2606:4700:4700::1111 2606:4700:4700::1001".split()
)
_VERSION_BEFORE = regex.compile(
    r"(?:(?<![^\W_])(?:v|ver|version|versions|release|rel|build|tag|tagged|firmware|fw|update|updated|upgrade"
    r"|upgraded|patch|sdk|kernel|package|pkg|lib|library|requires?|python|node|java)(?![^\W_])"
    r"[\s:=@-]*(?:(?:is|was|to|from|of)\s+)?|[=@])$",
    FLAGS,
)
_PERSONAL_KEYS = frozenset(
    "token access secret password passwd pwd pass session sessionid sid auth authorization sig signature apikey key"
    " otp code email mail phone tel user userid uid username account acct customer cust member login profile ssn"
    " dob jwt bearer nonce".split()
)
_PERSONAL_PATH = frozenset(
    "user users u profile profiles account accounts customer customers member members people person employee"
    " employees patient patients reset reset-password password-reset verify verification confirm unsubscribe"
    " invite invitation invitations activate activation session sessions token tokens".split()
)
_SOCIAL = frozenset(
    "facebook.com fb.com instagram.com twitter.com x.com tiktok.com threads.net snapchat.com pinterest.com t.me"
    " wa.me venmo.com paypal.me cash.app calendly.com patreon.com about.me linktr.ee onlyfans.com vk.com".split()
)
_SOCIAL_PAGES = frozenset(
    "help about legal privacy policies terms settings login signup explore hashtag search watch home".split()
)
_CODE_HOSTS = frozenset("github.com gitlab.com bitbucket.org".split())
_CODE_HOST_PAGES = frozenset(
    "features pricing about topics explore marketplace login join settings orgs enterprise security sponsors"
    " collections trending".split()
)
_UUID = regex.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", regex.IGNORECASE)


def personal_ip(text: str, start: int, end: int) -> bool:
    """An IP address that can point at a person: public, not a well-known resolver, not a version string."""
    raw = text[start:end]
    try:
        ip = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return True
    if not ip.is_global or str(ip) in _PUBLIC_RESOLVERS:
        return False
    if ip.version == 4:
        if all(len(octet) == 1 for octet in raw.split(".")):  # 1.2.3.4 reads as a version
            return False
        if regex.match(r"\.\d", text[end : end + 2]) or regex.search(r"\d\.$", text[max(0, start - 2) : start]):
            return False
        if _VERSION_BEFORE.search(text[max(0, start - 32) : start]):
            return False
    return True


def _random_token(s: str) -> bool:
    if _UUID.search(s):
        return True
    for piece in regex.split(r"[-_.~=]", s):
        if len(piece) < 12 or not (piece.isascii() and piece.isalnum()):
            continue
        digits = sum(c.isdigit() for c in piece)
        if not 0 < digits < len(piece):
            continue
        if digits / len(piece) >= 0.2 or (len(piece) >= 16 and not piece.islower() and not piece.isupper()):
            return True
    return False


def _key_words(key: str) -> set[str]:
    return {key.lower(), *(w.lower() for w in regex.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", key))}


def personal_url(url: str) -> bool:
    """A URL that carries personal data: an e-mail or login, a token/key/session/user parameter, a user or reset
    path, a long random token, a social profile. Public links, bare domains and code (app.run) do not."""
    if "@" in url:
        return True
    parts = urlsplit(url if "://" in url else "//" + url)
    if parts.username or parts.password:
        return True
    host = (parts.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    segments = [s for s in parts.path.split("/") if s]
    if segments and host in _SOCIAL and segments[0].lower() not in _SOCIAL_PAGES:
        return True
    if segments and host in _CODE_HOSTS and len(segments) == 1 and segments[0].lower() not in _CODE_HOST_PAGES:
        return True
    if segments and host in ("youtube.com", "reddit.com", "medium.com", "linkedin.com"):
        if segments[0].startswith("@") or segments[0].lower() in ("user", "u", "c", "channel", "in", "pub"):
            return True
    for key, value in parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(parts.fragment):
        if _key_words(key) & _PERSONAL_KEYS or _random_token(value):
            return True
    return any(s.lower() in _PERSONAL_PATH for s in segments[:-1]) or any(_random_token(s) for s in segments)


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t\"'“‘(*-•")
    return not before or before[-1] in ".!?:;\n"


def _not_a_name(text: str, kind: str, start: int, end: int, allow: frozenset[str]) -> bool:
    span = text[start:end]
    if any(s in span for s in _NOT_IN_A_NAME) or (kind == "PERSON" and any(c.isdigit() for c in span)):
        return True
    words = [w.lower().rstrip(".-'’").removesuffix("'s").removesuffix("’s") for w in _WORD.findall(span)]
    words = [w for w in words if w]
    if not words:
        return False
    common = common_words()
    if " ".join(words) in allow:
        return True
    if any(w in allow for w in words) and all(w in allow or w in common for w in words):
        return True
    return _sentence_start(text, start) and all(w in common for w in words)


def _overlap(a: RecognizerResult, b: RecognizerResult) -> bool:
    return a.start < b.end and b.start < a.end


def _merge_into_addresses(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """A LOCATION that overlaps a street line grows it; then PERSON/LOCATION hits on an address are dropped."""
    addresses = [r for r in results if r.entity_type in ("STREET_ADDRESS", "POSTCODE")]
    if not addresses:
        return results
    spans = {id(a): (a.start, a.end) for a in addresses}
    for r in results:
        if r.entity_type == "LOCATION":
            for a in addresses:
                s, e = spans[id(a)]
                if a.entity_type == "STREET_ADDRESS" and r.start < e and s < r.end:
                    spans[id(a)] = (min(s, r.start), max(e, r.end))
    out = []
    for r in results:
        if r.entity_type in _NER_TYPES and any(r.start < e and s < r.end for s, e in spans.values()):
            continue
        if id(r) in spans and spans[id(r)] != (r.start, r.end):
            r = RecognizerResult(r.entity_type, *spans[id(r)], r.score, r.analysis_explanation, r.recognition_metadata)
        out.append(r)
    return out


def filter_results(
    text: str, results: list[RecognizerResult], allow_words: Sequence[str] = ()
) -> list[RecognizerResult]:
    """`results` without the hits that are not personal data (see the module docstring); `allow_words` extend the
    YAML's product and tool names (a deployment's products, the assistant's name)."""
    allow = allow_set(tuple(allow_words))
    kept = []
    for r in results:
        kind = r.entity_type
        if kind == "IP_ADDRESS" and not personal_ip(text, r.start, r.end):
            continue
        if kind == "URL" and not personal_url(text[r.start : r.end]):
            continue
        if kind in _NER_TYPES and _not_a_name(text, kind, r.start, r.end, allow):
            continue
        if kind in _LOOKALIKES and reference_label_before(text, r.start):
            continue
        kept.append(r)
    # A name found after a cue ("Hello, Marta speaking") is a PERSON, whatever spaCy called it.
    cued = [r for r in kept if (r.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY) == _CUE_NAME]
    if cued:
        kept = [r for r in kept if r.entity_type != "LOCATION" or not any(_overlap(r, c) for c in cued)]
    return _merge_into_addresses(kept)
