"""The PII recall benchmark's corpus generator (benchmarks/pii_corpus.py): deterministic, its spans line
up with the text, every type and variety is there, identity numbers pass their checks, the held-out
corpus shares no name, street or city. Recall itself is the benchmark's to report, not a test's."""

import ipaddress
from collections import Counter

import pytest

from benchmarks.pii_corpus import (
    ADDRESS_COUNTRIES,
    CITIES,
    FIELDS,
    HOME_CITIES,
    NAMES,
    NEGATIVE_CATEGORIES,
    PHONE_COUNTRIES,
    STREETS,
    TYPES,
    Span,
    bounded,
    half,
    iban_valid,
    invariant_holds,
    luhn_valid,
    make_corpus,
    nir_valid,
    steuer_id_valid,
    verhoeff_valid,
)
from benchmarks.pii_recall import outcome, replacements
from kto_pipeline.ingest.contract import ROW_DTYPES


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(0)


@pytest.fixture(scope="module")
def held_out():
    return make_corpus(1, held_out=True)


def test_same_seed_same_corpus_other_seed_other_corpus():
    assert make_corpus(3, 40, 15) == make_corpus(3, 40, 15)
    assert make_corpus(3, 40, 15).records != make_corpus(4, 40, 15).records


def test_default_size(corpus):
    assert len(corpus.positives) == 300 and len(corpus.negatives) == 110
    assert len(corpus.spans) >= 1000
    assert len({r.record_id for r in corpus.records}) == len(corpus.records)


def test_spans_line_up_with_the_text(corpus, held_out):
    for record in corpus.records + held_out.records:
        by_field = {
            name: sorted((s for s in record.spans if s.field == name), key=lambda s: s.start) for name in FIELDS
        }
        for name, spans in by_field.items():
            text = record.text(name)
            assert spans == [] or text is not None
            for span in spans:
                assert text[span.start : span.end] == span.value, (record.record_id, span)
                assert span.type in TYPES and span.value.strip() == span.value and span.value
            assert all(a.end <= b.start for a, b in zip(spans, spans[1:])), (record.record_id, spans)
            if text is not None:
                assert invariant_holds(text, spans), record.record_id


def test_negatives_hold_no_spans_and_every_category(corpus):
    assert all(not r.spans for r in corpus.negatives)
    assert all(r.spans for r in corpus.positives)
    assert Counter(r.category for r in corpus.negatives).keys() == set(NEGATIVE_CATEGORIES)


def test_every_type_and_variety_is_present(corpus):
    spans = corpus.spans
    types = Counter(s.type for s in spans)
    assert set(types) == set(TYPES) and min(types.values()) >= 30, types
    assert {s.field for s in spans} == set(FIELDS)
    people = [s for s in spans if s.type == "PERSON"]
    assert {s.origin for s in people} == set(NAMES)
    variants = {s.variant for s in people}
    for wanted in ("full after cue", "lower full after cue", "lower first after cue", "full no cue", "sign-off"):
        assert any(wanted in v for v in variants), wanted
    assert any(s.value.islower() for s in people) and any(s.value.istitle() for s in people)
    assert {s.origin for s in spans if s.type == "PHONE_NUMBER"} == set(PHONE_COUNTRIES)
    assert {s.origin for s in spans if s.type == "STREET_ADDRESS"} == set(ADDRESS_COUNTRIES)
    assert {s.origin for s in spans if s.type == "POSTCODE"} == set(ADDRESS_COUNTRIES)
    assert any(" unit" in s.variant for s in spans if s.type == "STREET_ADDRESS")
    assert {s.variant for s in spans if s.type == "LOCATION"} >= {"lives in", "address city"}
    cards = {s.variant for s in spans if s.type == "CREDIT_CARD"}
    for brand in ("visa", "mastercard", "mastercard 2-series", "amex"):
        assert any(v.startswith(brand + " ") for v in cards), brand
    for fmt in ("spaces", "dashes", "no separator"):
        assert any(v.endswith(fmt) for v in cards), fmt
    assert {s.variant for s in spans if s.type == "US_SSN"} == {"dashes", "spaces", "no separator"}
    assert {s.variant for s in spans if s.type == "IP_ADDRESS"} == {"ipv4", "ipv6"}


def test_numbers_are_valid(corpus):
    for s in corpus.spans:
        digits = "".join(c for c in s.value if c.isdigit())
        if s.type == "CREDIT_CARD":
            assert luhn_valid(s.value) and len(digits) in (15, 16), s
            if "2-series" in s.variant:
                assert 2221 <= int(digits[:4]) <= 2720
        elif s.type == "IBAN_CODE":
            assert iban_valid(s.value), s
        elif s.type == "FR_NIR":
            assert nir_valid(s.value), s
        elif s.type == "DE_TAX_ID":
            assert steuer_id_valid(s.value), s
        elif s.type == "IN_AADHAAR":
            assert verhoeff_valid(digits) and len(digits) == 12 and digits[0] not in "01", s
        elif s.type == "US_SSN":
            assert len(digits) == 9 and digits != "078051120"
            assert (
                digits[:3] not in ("000", "666") and digits[0] != "9" and digits[3:5] != "00" and digits[5:] != "0000"
            )
        elif s.type == "IP_ADDRESS":
            assert ipaddress.ip_address(s.value).is_global, s
        elif s.type == "IN_PAN":
            assert len(s.value) == 10 and s.value[3] == "P" and s.value[5:9].isdigit()


def test_check_digit_helpers_reject_a_changed_digit():
    assert luhn_valid("4539 1488 0343 6467") and not luhn_valid("4539 1488 0343 6468")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")


def test_held_out_lists_are_disjoint_halves_and_the_corpora_share_no_name_street_or_city(corpus, held_out):
    def values(lists, which):
        return {v for items in lists for v in half(items, which)}

    name_lists = [g for g, _, _ in NAMES.values()] + [f for _, f, _ in NAMES.values()]
    place_lists = [*STREETS.values(), [c for c, _, _ in sum(CITIES.values(), [])], HOME_CITIES]
    for lists in (name_lists, place_lists):
        assert values(lists, False).isdisjoint(values(lists, True))
    for typ in ("PERSON", "LOCATION", "STREET_ADDRESS"):
        main = {s.value.lower() for s in corpus.spans if s.type == typ}
        other = {s.value.lower() for s in held_out.spans if s.type == typ}
        assert main and other and main.isdisjoint(other), typ


def test_frame_is_one_row_per_completion_in_the_row_contract(corpus):
    frame = corpus.frame()
    assert list(frame.columns) == list(ROW_DTYPES)
    edited = sum(r.edited_completion is not None for r in corpus.records)
    assert len(frame) == len(corpus.records) + edited
    assert frame.groupby("record_id").size().max() == 2
    assert frame["prompt_messages"].isna().all()


def test_the_scoring_rule_on_hand_made_redactions():
    record = make_corpus(0, 5, 0).records[0]
    span = record.spans[0]
    text = record.text(span.field)
    whole = text[: span.start] + "<X_1>" + text[span.end :]
    assert outcome(span, text, whole)[0] == "caught"
    assert outcome(span, text, text)[0] == "missed"
    assert replacements(text, whole) == [(span.start, span.end, "X")]
    assert replacements(text, text) == []

    text = "I'm Priya Sharma, thanks"
    name = Span("prompt", 4, 16, "PERSON", "Priya Sharma", "full", "indian")
    assert outcome(name, text, "I'm <PERSON_1> Sharma, thanks") == ("partial", ["Sharma"])
    assert outcome(name, text, "I'm <PERSON_1>, thanks") == ("caught", [])
    assert bounded("Li").search("Link") is None
