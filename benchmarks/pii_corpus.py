"""A seeded corpus of support-chat records with every PII substring's place recorded, for the recall benchmark.

    from benchmarks.pii_corpus import make_corpus
    corpus = make_corpus(seed=0)                     # ~300 positive records (>1,000 PII spans), 110 negatives
    corpus.frame()                                   # rows in the pipeline's contract, ready for `redact`
    make_corpus(seed=1, held_out=True)               # names, streets and cities from the other half of each list

A positive record is a user's prompt, the assistant's completion and, for about a third of them, an edited
completion (the human rewrite, its second row). PII sits in all three, each occurrence recorded as a
`Span(field, start, end, type, value, variant, origin)`: `variant` says how it was written (case, format,
cue), `origin` the culture of a name or the country of an address, phone or ID. Identity numbers are valid
where a check exists (Luhn, IBAN mod 97, NIR key, Steuer-ID, Verhoeff for Aadhaar), phone numbers are ones
`phonenumbers` calls valid for their country, IPs are public. Negatives hold no personal data, only what a
redactor tends to mistake for it: public figures and places, code, product names, public links, historical
dates, order numbers, common passwords, capitalised words.

Held-out split: every name, street and city list is split by position, even indices to the main corpus
and odd ones to the held-out corpus, so the two share no name, street or city and each keeps every culture
and country. Negatives use fixed lists (they measure over-redaction, not generalisation).

The generator keeps one invariant the scorer relies on: in a field, every occurrence of a span's value
(bounded by non-alphanumerics, case-sensitive) is itself a span with that value, so "the value no longer
occurs" means "this PII is gone". A record that breaks it is drawn again.

The word lists and text templates make this module long (about 1,300 lines); most of it is data.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kto_pipeline.ingest.contract import ROW_DTYPES, frame_from_records

FIELDS = ("prompt", "completion", "edited_completion")
TYPES = (
    "PERSON",
    "STREET_ADDRESS",
    "POSTCODE",
    "LOCATION",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "DATE_OF_BIRTH",
    "FR_NIR",
    "DE_TAX_ID",
    "IN_AADHAAR",
    "IN_PAN",
    "UK_NINO",
    "IP_ADDRESS",
)
NEGATIVE_CATEGORIES = (
    "public_figures",
    "places",
    "code",
    "products",
    "public_links",
    "history",
    "order_numbers",
    "passwords",
    "sentence_start",
    "numbers_versions",
)

# ---------------------------------------------------------------------------------------------- word lists
# (given names, family names, family name first). Names that are common English words are left out, so a
# lower-case name cannot be confused with the text around it.
NAMES: dict[str, tuple[list[str], list[str], bool]] = {
    "english": (
        "Oliver Charlotte Harry Amelia George Isla Jack Emily Thomas Sophie Daniel Hannah".split(),
        "Thompson Whitaker Fletcher Harrington Caldwell Pemberton Ashworth Holloway Prescott Langley Kendrick "
        "Sutton".split(),
        False,
    ),
    "spanish": (
        "Alejandro Lucía Javier Carmen Mateo Valentina Diego Sofía Andrés Martina Santiago Ximena".split(),
        ["García López", "Fernández", "Martínez Ruiz", "Rodríguez", "Sánchez", "Gómez Ortega", "Herrera"]
        + ["Castillo", "Morales Vega", "Jiménez", "Navarro", "Delgado"],
        False,
    ),
    "indian": (
        "Priya Arjun Ananya Rohan Kavya Vikram Sneha Aditya Lakshmi Rahul Deepika Siddharth".split(),
        "Sharma Iyer Patel Reddy Banerjee Nair Kulkarni Chatterjee Menon Gupta Deshpande Venkataraman".split(),
        False,
    ),
    "chinese": (
        "Wei Xiaoming Jing Haoran Yuxuan Fang Zihan Mingyu Xinyi Jiahao Lihua Yuting".split(),
        "Zhang Wang Liu Chen Yang Huang Zhao Zhou Wu Xu Sun Guo".split(),
        True,
    ),
    "arabic": (
        "Ahmed Fatima Omar Layla Youssef Aisha Khalid Mariam Hassan Noor Tariq Salma".split(),
        "Al-Sayed Haddad Mansour El-Amin Khoury Nasser Al-Farsi Hamdan Saleh Barakat Qureshi Aziz".split(),
        False,
    ),
    "nigerian": (
        "Chinedu Ngozi Oluwaseun Adaeze Emeka Funmilayo Tunde Chiamaka Obinna Yetunde Ikechukwu Bolanle".split(),
        "Okafor Adeyemi Bello Eze Okonkwo Balogun Nwosu Adebayo Obi Ogunleye Chukwu Olawale".split(),
        False,
    ),
    "slavic": (
        "Dmitri Anastasia Katarzyna Piotr Olena Sergei Marta Tomasz Yulia Bogdan Natalia Miloš".split(),
        "Volkov Kowalska Nowak Petrov Shevchenko Ivanova Wiśniewski Novák Sokolov Horvat Zieliński Kuznetsova".split(),
        False,
    ),
    "japanese": (
        "Haruto Yui Kenji Sakura Takeshi Aoi Ren Hina Daiki Yuna Shota Mei".split(),
        "Watanabe Tanaka Suzuki Takahashi Yamamoto Nakamura Kobayashi Ito Sato Yoshida Matsumoto Inoue".split(),
        False,
    ),
    "vietnamese": (
        ["Văn Hùng", "Thị Mai", "Minh Anh", "Thị Lan", "Quốc Bảo", "Thu Trang"]
        + ["Van Duc", "Thi Hoa", "Duc Thinh", "Ngoc Linh", "Thanh Tam", "Bao Chau"],
        "Nguyễn Trần Lê Phạm Hoàng Vũ Đặng Bùi Nguyen Tran Pham Hoang".split(),
        True,
    ),
    "german": (
        "Lukas Annika Maximilian Lena Jürgen Katrin Felix Johanna Matthias Sabine Tobias Greta".split(),
        "Müller Schneider Fischer Weber Becker Hoffmann Schäfer Krüger Schröder Neumann Zimmermann Braun".split(),
        False,
    ),
    "french": (
        "Camille Julien Élodie Mathieu Chloé Antoine Manon Guillaume Léa Jean-Luc Margaux Thibault".split(),
        "Moreau Lefebvre Dubois Girard Lambert Fontaine Rousseau Chevalier Mercier Faure Blanchard Garnier".split(),
        False,
    ),
    "korean": (
        "Ji-woo Min-jun Seo-yeon Hyun-woo Ji-hoon Soo-ah Dong-hyun Ha-eun Jae-won Yeon-woo Seung-min Da-eun".split(),
        "Kim Park Choi Jung Kang Yoon Jang Lim Han Shin Seo Kwon".split(),
        False,
    ),
    "turkish": (
        "Mehmet Elif Emre Zeynep Burak Ayşe Murat Defne Kerem Selin Oğuz Ebru".split(),
        "Yılmaz Demir Şahin Çelik Kaya Öztürk Aydın Arslan Doğan Kılıç Aslan Koç".split(),
        False,
    ),
    "portuguese": (
        "João Beatriz Gabriel Larissa Rafael Camila Thiago Fernanda Leonardo Juliana Gustavo Mariana".split(),
        "Silva Oliveira Santos Pereira Costa Almeida Ferreira Rodrigues Carvalho Gomes Ribeiro Barbosa".split(),
        False,
    ),
}

# Streets per country with street addresses.
STREETS = {
    "US": "Oakridge Drive|Maple Grove Avenue|Willow Creek Road|Cedar Lane|Juniper Street|Sycamore Court|"
    "Lakeview Boulevard|Birchwood Way|Elm Street|Pinecrest Terrace|Magnolia Avenue|Hawthorne Place",
    "UK": "Wellington Road|Victoria Street|Albert Terrace|Church Lane|Mill Road|Station Road|Queens Crescent|"
    "Kingsway Gardens|Rosemary Close|Beechwood Grove|Harrow Mews|Orchard Way",
    "DE": "Hauptstraße|Lindenallee|Goethestraße|Schillerweg|Bahnhofstraße|Am Rosengarten|Kastanienweg|"
    "Berliner Str.|Mozartstraße|Eichendorffstraße|Gartenweg|Ringstraße",
    "FR": "rue de la Paix|avenue Victor Hugo|boulevard Saint-Germain|rue des Lilas|impasse des Tilleuls|"
    "rue Jean Jaurès|allée des Acacias|chemin du Moulin|place Bellecour|rue Pasteur|quai de la Loire|"
    "rue du Faubourg Saint-Antoine",
}
STREETS = {k: v.split("|") for k, v in STREETS.items()}
# (city, region, postcode prefix) per country.
CITIES = {
    "US": "Austin,TX,787|Denver,CO,802|Portland,OR,972|Columbus,OH,432|Raleigh,NC,276|Madison,WI,537|Tucson,AZ,857|"
    "Omaha,NE,681|Boise,ID,837|Richmond,VA,232|Albany,NY,122|Savannah,GA,314",
    "UK": "Leeds,,LS|Bristol,,BS|Manchester,,M|Sheffield,,S|Nottingham,,NG|Cardiff,,CF|Brighton,,BN|"
    "Norwich,,NR|York,,YO|Leicester,,LE|Glasgow,,G|Oxford,,OX",
    "DE": "Berlin,,10|Hamburg,,20|München,,80|Köln,,50|Leipzig,,04|Dresden,,01|Stuttgart,,70|Bremen,,28|"
    "Hannover,,30|Nürnberg,,90|Freiburg,,79|Münster,,48",
    "FR": "Paris,,750|Lyon,,6900|Marseille,,130|Toulouse,,310|Nantes,,440|Bordeaux,,330|Lille,,590|"
    "Rennes,,350|Strasbourg,,670|Montpellier,,340|Grenoble,,380|Dijon,,210",
}
CITIES = {k: [tuple(c.split(",")) for c in v.split("|")] for k, v in CITIES.items()}
# Where users say they live (no street address), from every region.
HOME_CITIES = (
    "Pune|Lagos|Guadalajara|Kraków|Osaka|Da Nang|Chengdu|Izmir|Porto Alegre|Busan|Kochi|Valparaíso|"
    "Tbilisi|Mombasa|Rosario|Ibadan|Coimbatore|Wrocław|Sapporo|Hue|Kharkiv|Tampere|Bilbao|Graz|"
    "Eindhoven|Aarhus|Gdańsk|Medellín|Chiang Mai|Surabaya|Kumasi|Kazan|Nagpur|Recife|Brno|Cluj-Napoca"
).split("|")
ADDRESS_COUNTRIES = ("US", "UK", "DE", "FR")
PHONE_COUNTRIES = ("US", "UK", "DE", "FR", "IN", "ES", "IT", "BR", "AU")
MAIL_DOMAINS = (
    "gmail.com yahoo.co.uk outlook.com web.de gmx.de orange.fr hotmail.es rediffmail.com qq.com 163.com "
    "icloud.com proton.me libero.it uol.com.br bigpond.com acme-logistics.com"
).split()
_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NINO_BAD = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
_MONTHS = "January February March April May June July August September October November December".split()


def half(items: list, held_out: bool) -> list:
    """The half of a list a corpus draws from: even positions for the main corpus, odd for the held-out."""
    return list(items[int(held_out) :: 2])


# ------------------------------------------------------------------------------------------ check digits
def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _luhn_digit(body: str) -> str:
    return next(str(d) for d in range(10) if luhn_valid(body + str(d)))


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _iban(country: str, bban: str) -> str:
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def nir_valid(nir: str) -> bool:
    s = nir.replace(" ", "")
    return len(s) == 15 and 97 - int(s[:13]) % 97 == int(s[13:])


def steuer_id_valid(tax_id: str) -> bool:
    s = tax_id.replace(" ", "")
    if len(s) != 11 or s[0] == "0":
        return False
    counts = sorted((s[:10].count(d) for d in set(s[:10])), reverse=True)
    if counts[0] not in (2, 3) or counts[1] != 1:
        return False
    return _steuer_digit(s[:10]) == s[10]


def _steuer_digit(body: str) -> str:
    # ISO 7064 MOD 11,10, as the Bundeszentralamt für Steuern specifies.
    product = 10
    for c in body:
        total = (int(c) + product) % 10 or 10
        product = total * 2 % 11
    check = 11 - product
    return "0" if check == 10 else str(check)


_V_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_V_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_valid(number: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed([int(x) for x in number if x.isdigit()])):
        c = _V_D[c][_V_P[i % 8][ch]]
    return c == 0


def _verhoeff_digit(body: str) -> str:
    return next(str(d) for d in range(10) if verhoeff_valid(body + str(d)))


# ----------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Span:
    field: str
    start: int
    end: int
    type: str
    value: str
    variant: str
    origin: str


@dataclass
class Record:
    record_id: str
    negative: bool
    category: str  # the negative's category; "positive" otherwise
    prompt: str
    completion: str
    edited_completion: str | None
    spans: list[Span] = field(default_factory=list)

    def text(self, name: str) -> str | None:
        return getattr(self, name)

    def fields(self) -> list[str]:
        return [f for f in FIELDS if self.text(f) is not None]


@dataclass
class Corpus:
    seed: int
    held_out: bool
    records: list[Record]

    @property
    def positives(self) -> list[Record]:
        return [r for r in self.records if not r.negative]

    @property
    def negatives(self) -> list[Record]:
        return [r for r in self.records if r.negative]

    @property
    def spans(self) -> list[Span]:
        return [s for r in self.records for s in r.spans]

    def frame(self) -> pd.DataFrame:
        """One row per completion in the pipeline's row contract; an edited record's two rows share its id."""
        rows = []
        for r in self.records:
            base = {
                "record_id": r.record_id,
                "week": "2026-10-05",
                "timestamp": pd.Timestamp("2026-10-06", tz="UTC"),
                "prompt": r.prompt,
                "prompt_messages": None,
                "source": "production",
                "conversation_id": None,
                "user_id": None,
                "model_version": None,
                "metadata": None,
                "dump": "pii_corpus.jsonl",
                "line": len(rows) + 1,
            }
            if r.edited_completion is None:
                rows.append({**base, "row_id": f"{r.record_id}-0", "completion": r.completion})
                rows[-1].update(label=True, signal="thumb")
            else:
                rows.append({**base, "row_id": f"{r.record_id}-0", "completion": r.edited_completion})
                rows[-1].update(label=True, signal="edit")
                rows.append({**base, "row_id": f"{r.record_id}-1", "completion": r.completion})
                rows[-1].update(label=False, signal="edit_original", line=len(rows) + 1)
        return frame_from_records(rows, ROW_DTYPES)


def bounded(value: str) -> re.Pattern:
    """`value` not touching another letter or digit on either side (case-sensitive)."""
    return re.compile(r"(?<![^\W_])" + re.escape(value) + r"(?![^\W_])")


def ascii_fold(text: str) -> str:
    text = text.replace("ß", "ss").replace("ı", "i").replace("đ", "d").replace("Đ", "D").replace("ł", "l")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Pii:
    value: str
    type: str
    variant: str
    origin: str


def _lower(parts: list) -> list:
    return [
        Pii(p.value.lower(), p.type, "lower " + p.variant, p.origin) if isinstance(p, Pii) else p.lower() for p in parts
    ]


def _build(parts: list, name: str) -> tuple[str, list[Span]]:
    text, spans = "", []
    for p in parts:
        if isinstance(p, Pii):
            spans.append(Span(name, len(text), len(text) + len(p.value), p.type, p.value, p.variant, p.origin))
            text += p.value
        else:
            text += p
    return text, spans


def invariant_holds(text: str, spans: list[Span]) -> bool:
    """Every bounded occurrence of a span's value in the text is a span with that value."""
    places = {(s.start, s.end, s.value) for s in spans}
    return all((m.start(), m.end(), s.value) in places for s in spans for m in bounded(s.value).finditer(text))


def make_corpus(seed: int = 0, n_positive: int = 300, n_negative: int = 110, *, held_out: bool = False) -> Corpus:
    """`n_positive` records with PII and `n_negative` without, shuffled, the same for the same arguments."""
    gen = _Gen(np.random.default_rng(seed), held_out)
    records: list[Record] = []
    kinds = gen.kind_stream(n_positive)
    for i in range(n_positive):
        for _ in range(50):
            parts = positive_parts(gen, kinds[i])
            built = {name: _build(p, name) for name, p in parts.items() if p is not None}
            if all(invariant_holds(text, spans) for text, spans in built.values()):
                break
        else:  # pragma: no cover - the lists are chosen so that this does not happen
            raise RuntimeError(f"record {i}: could not draw text keeping the span invariant")
        records.append(
            Record(
                f"pos-{i:04d}",
                False,
                "positive",
                built["prompt"][0],
                built["completion"][0],
                built["edited_completion"][0] if "edited_completion" in built else None,
                [s for _, spans in built.values() for s in spans],
            )
        )
    cats = [NEGATIVE_CATEGORIES[i % len(NEGATIVE_CATEGORIES)] for i in range(n_negative)]
    for i, cat in enumerate(cats):
        prompt, completion, edited = negative_record(gen, cat)
        records.append(Record(f"neg-{i:04d}", True, cat, prompt, completion, edited))
    order = gen.rng.permutation(len(records))
    return Corpus(seed, held_out, [records[j] for j in order])


# --------------------------------------------------------------------------------------------- generator
class _Gen:
    """Draws values (names, addresses, numbers) from one seeded generator and one half of each list."""

    def __init__(self, rng: np.random.Generator, held_out: bool):
        self.rng = rng
        self.names = {c: (half(g, held_out), half(f, held_out), ff) for c, (g, f, ff) in NAMES.items()}
        self.streets = {c: half(v, held_out) for c, v in STREETS.items()}
        self.cities = {c: half(v, held_out) for c, v in CITIES.items()}
        self.home_cities = half(HOME_CITIES, held_out)

    # -- primitives
    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def randint(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def digits(self, n: int) -> str:
        return "".join(str(int(d)) for d in self.rng.integers(0, 10, n))

    def shuffled(self, seq: list) -> list:
        return [seq[int(i)] for i in self.rng.permutation(len(seq))]

    def kind_stream(self, n_records: int) -> list[list[str]]:
        """Two or three snippet kinds per record, dealt round-robin from shuffled rounds of every kind."""
        sizes = [2 + int(self.chance(0.5)) for _ in range(n_records)]
        stream: list[str] = []
        while len(stream) < sum(sizes):
            stream += self.shuffled(sorted(SNIPPETS))
        out, at = [], 0
        for n in sizes:
            out.append(stream[at : at + n])
            at += n
        return out

    # -- people
    def person(self, culture: str | None = None) -> dict:
        culture = culture or self.choice(sorted(self.names))
        given, family, family_first = self.names[culture]
        g, f = self.choice(given), self.choice(family)
        full = f"{f} {g}" if family_first else f"{g} {f}"
        first = g.split()[-1] if culture == "vietnamese" else g
        return {"culture": culture, "first": first, "last": f, "full": full}

    def name(self, person: dict, form: str, variant: str) -> Pii:
        return Pii(person[form], "PERSON", f"{form} {variant}".strip(), person["culture"])

    def email(self, person: dict) -> Pii:
        first = ascii_fold(person["first"]).lower().replace(" ", "").replace("-", "")
        last = ascii_fold(person["last"]).lower().replace(" ", "").replace("-", "")
        local = self.choice(
            [
                f"{first}.{last}",
                f"{first}{last}{self.randint(1, 99)}",
                f"{first[0]}.{last}",
                f"{first}_{last}",
                f"{last}.{first}{self.randint(70, 99)}",
                f"{first}{self.randint(1980, 2005)}",
                self.choice(["sunnyday", "bluefox", "kitecat", "mapleleaf", "nightowl"]) + f"_{self.randint(1, 999)}",
            ]
        )
        return Pii(f"{local}@{self.choice(MAIL_DOMAINS)}", "EMAIL_ADDRESS", "plain", person["culture"])

    # -- places
    def city_postcode(self, country: str) -> tuple[Pii, str, str]:
        """A city of the country (as LOCATION), its region and a postcode of that city."""
        city, region, prefix = self.choice(self.cities[country])
        if country == "US":
            postcode = prefix + self.digits(2) + (f"-{self.digits(4)}" if self.chance(0.25) else "")
        elif country == "UK":
            letters = "ABDEFGHJLNPQRSTUWXYZ"
            postcode = f"{prefix}{self.randint(1, 20)} {self.randint(1, 9)}{self.choice(letters)}{self.choice(letters)}"
        elif country == "FR" and city == "Paris":
            postcode = f"{prefix}{self.randint(1, 20):02d}"
        else:
            postcode = prefix + self.digits(5 - len(prefix))
        return Pii(city, "LOCATION", "address city", country), region, postcode

    def address(self, country: str) -> list:
        """A street line, its city and postcode, in the order and format the country writes them."""
        street = self.choice(self.streets[country])
        city, region, postcode = self.city_postcode(country)
        number = self.randint(1, 9800 if country == "US" else 250)
        if country == "US":
            unit = self.choice(
                ["", "", f", Apt {self.randint(1, 30)}{self.choice('ABCD')}", f", Unit {self.randint(2, 40)}"]
            )
            line = Pii(f"{number} {street}{unit}", "STREET_ADDRESS", "US" + (" unit" if unit else ""), "US")
            return [line, ", ", city, f", {region} ", Pii(postcode, "POSTCODE", "US in address", "US")]
        if country == "UK":
            unit = self.choice(
                ["", "", f"Flat {self.randint(1, 12)}, ", f"Flat {self.randint(1, 9)}{self.choice('AB')}, "]
            )
            line = Pii(f"{unit}{number} {street}", "STREET_ADDRESS", "UK" + (" unit" if unit else ""), "UK")
            return [line, ", ", city, " ", Pii(postcode, "POSTCODE", "UK in address", "UK")]
        if country == "DE":
            suffix = self.choice(["", "", "", "a", "b"])
            unit = self.choice(["", "", ", 3. OG", ", Hinterhaus"])
            line = Pii(f"{street} {number}{suffix}{unit}", "STREET_ADDRESS", "DE" + (" unit" if unit else ""), "DE")
            if self.chance(0.3):
                return [line, ", ", city, " ", Pii(postcode, "POSTCODE", "DE after city", "DE")]
            return [line, ", ", Pii(postcode, "POSTCODE", "DE before city", "DE"), " ", city]
        number_s = f"{number}{self.choice(['', '', '', ' bis', ' ter'])}"
        unit = self.choice(["", "", f", appartement {self.randint(1, 40)}", f", bâtiment {self.choice('ABC')}"])
        line = Pii(f"{number_s} {street}{unit}", "STREET_ADDRESS", "FR" + (" unit" if unit else ""), "FR")
        return [line, ", ", Pii(postcode, "POSTCODE", "FR before city", "FR"), " ", city]

    # -- numbers
    def phone(self, country: str) -> Pii:
        """A number `phonenumbers` calls valid for the country, in one of its national or international formats."""
        import phonenumbers

        region = "GB" if country == "UK" else country
        while True:
            value = self._phone(country)
            if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
                return Pii(value, "PHONE_NUMBER", country, country)

    def _phone(self, country: str) -> str:
        d, r = self.digits, self.randint
        if country == "US":
            area = self.choice(["212", "415", "312", "617", "206", "512", "303", "404", "713", "602"])
            ex = f"{r(2, 9)}{d(2)}"
            while ex[1:] == "11" or ex == "555":
                ex = f"{r(2, 9)}{d(2)}"
            line = d(4)
            value = self.choice(
                [f"({area}) {ex}-{line}", f"{area}-{ex}-{line}", f"{area}.{ex}.{line}", f"+1 {area} {ex} {line}"]
            )
        elif country == "UK":
            value = self.choice(
                [
                    f"07{self.choice('7789')}{d(2)} {d(6)}",
                    f"+44 7{self.choice('7789')}{d(2)} {d(6)}",
                    f"020 {r(7, 8)}{d(3)} {d(4)}",
                    f"0161 {r(2, 9)}{d(2)} {d(4)}",
                    f"+44 20 {r(7, 8)}{d(3)} {d(4)}",
                ]
            )
        elif country == "DE":
            value = self.choice(
                [
                    f"040 {r(2, 9)}{d(7)}",
                    f"030 {r(2, 9)}{d(6)}",
                    f"+49 30 {r(2, 9)}{d(6)}",
                    f"089 {r(2, 9)}{d(6)}",
                    f"015{self.choice('1257')} {r(2, 9)}{d(7)}",
                    f"+49 17{r(0, 9)} {r(2, 9)}{d(6)}",
                ]
            )
        elif country == "FR":
            pairs = " ".join(d(2) for _ in range(4))
            value = self.choice([f"06 {pairs}", f"07 {pairs}", f"01 {pairs}", f"+33 6 {pairs}", f"04 {pairs}"])
        elif country == "IN":
            head = f"{r(7, 9)}{d(4)}"
            value = self.choice([f"+91 {head} {d(5)}", f"0{head} {d(5)}", f"{head}{d(5)}", f"+91-{head}-{d(5)}"])
        elif country == "ES":
            value = self.choice(
                [f"6{d(2)} {d(3)} {d(3)}", f"+34 6{d(2)} {d(2)} {d(2)} {d(2)}", f"91 {r(2, 9)}{d(2)} {d(2)} {d(2)}"]
            )
        elif country == "IT":
            value = self.choice(
                [f"+39 3{r(2, 9)}{d(1)} {d(3)} {d(4)}", f"06 {r(2, 9)}{d(3)} {d(4)}", f"3{r(2, 9)}{d(1)} {d(7)}"]
            )
        elif country == "BR":
            value = self.choice(
                [f"+55 11 9{r(6, 9)}{d(3)}-{d(4)}", f"(11) 9{r(6, 9)}{d(3)}-{d(4)}", f"(21) {r(2, 3)}{d(3)}-{d(4)}"]
            )
        else:  # AU
            value = self.choice(
                [
                    f"04{r(0, 9)}{d(1)} {d(3)} {d(3)}",
                    f"+61 4{r(0, 9)}{d(1)} {d(3)} {d(3)}",
                    f"(02) {r(8, 9)}{d(3)} {d(4)}",
                ]
            )
        return value

    def card(self) -> Pii:
        brand = self.choice(["visa", "mastercard", "mastercard 2-series", "amex"])
        if brand == "visa":
            body = "4" + self.digits(14)
        elif brand == "mastercard":
            body = f"5{self.randint(1, 5)}" + self.digits(13)
        elif brand == "mastercard 2-series":
            body = f"{self.randint(2221, 2720)}" + self.digits(11)
        else:
            body = self.choice(["34", "37"]) + self.digits(12)
        number = body + _luhn_digit(body)
        sep = self.choice([" ", "-", ""])
        groups = (
            [number[:4], number[4:10], number[10:]] if brand == "amex" else [number[i : i + 4] for i in range(0, 16, 4)]
        )
        fmt = {" ": "spaces", "-": "dashes", "": "no separator"}[sep]
        return Pii(sep.join(groups), "CREDIT_CARD", f"{brand} {fmt}", "")

    def iban(self) -> Pii:
        country = self.choice(["DE", "FR", "GB", "ES", "IT", "NL"])
        d = self.digits
        bban = {
            "DE": lambda: d(18),
            "FR": lambda: d(23),
            "GB": lambda: self.choice(["NWBK", "BARC", "LOYD", "HBUK", "MIDL"]) + d(14),
            "ES": lambda: d(20),
            "IT": lambda: self.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + d(22),
            "NL": lambda: self.choice(["ABNA", "INGB", "RABO", "TRIO"]) + d(10),
        }[country]()
        iban = _iban(country, bban)
        grouped = self.chance(0.7)
        value = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if grouped else iban
        return Pii(value, "IBAN_CODE", "grouped" if grouped else "compact", country)

    def ssn(self) -> Pii:
        while True:
            area = self.randint(1, 899)
            value = f"{area:03d}{self.randint(1, 99):02d}{self.randint(1, 9999):04d}"
            if area != 666 and value not in ("078051120", "219099999") and len(set(value)) > 1:
                break
        sep = self.choice(["-", "-", " ", ""])
        fmt = {"-": "dashes", " ": "spaces", "": "no separator"}[sep]
        return Pii(sep.join([value[:3], value[3:5], value[5:]]), "US_SSN", fmt, "US")

    def dob(self) -> Pii:
        y, m, day = self.randint(1948, 2006), self.randint(1, 12), self.randint(1, 28)
        fmt, value = self.choice(
            [
                ("dd/mm/yyyy", f"{day:02d}/{m:02d}/{y}"),
                ("mm/dd/yyyy", f"{m:02d}/{day:02d}/{y}"),
                ("iso", f"{y}-{m:02d}-{day:02d}"),
                ("dd.mm.yyyy", f"{day:02d}.{m:02d}.{y}"),
                ("month d, yyyy", f"{_MONTHS[m - 1]} {day}, {y}"),
                ("d month yyyy", f"{day} {_MONTHS[m - 1]} {y}"),
            ]
        )
        return Pii(value, "DATE_OF_BIRTH", fmt, "")

    def nir(self) -> Pii:
        dept = self.choice([f"{x:02d}" for x in range(1, 96) if x != 20])
        body = f"{self.randint(1, 2)}{self.randint(48, 99):02d}{self.randint(1, 12):02d}{dept}"
        body += f"{self.randint(1, 990):03d}{self.randint(1, 999):03d}"
        key = f"{97 - int(body) % 97:02d}"
        spaced = self.chance(0.6)
        parts = [body[0], body[1:3], body[3:5], body[5:7], body[7:10], body[10:13], key]
        return Pii(" ".join(parts) if spaced else body + key, "FR_NIR", "spaced" if spaced else "compact", "FR")

    def steuer_id(self) -> Pii:
        while True:
            distinct = [int(x) for x in self.rng.permutation(10)[:9]]
            body_digits = distinct + [distinct[self.randint(0, 8)]]
            body = "".join(str(x) for x in self.shuffled(body_digits))
            if body[0] != "0":
                break
        value = body + _steuer_digit(body)
        spaced = self.chance(0.5)
        shown = f"{value[:2]} {value[2:5]} {value[5:8]} {value[8:]}" if spaced else value
        return Pii(shown, "DE_TAX_ID", "spaced" if spaced else "compact", "DE")

    def aadhaar(self) -> Pii:
        body = f"{self.randint(2, 9)}{self.digits(10)}"
        value = body + _verhoeff_digit(body)
        sep = self.choice([" ", " ", "-", ""])
        fmt = {" ": "spaces", "-": "dashes", "": "no separator"}[sep]
        return Pii(sep.join([value[:4], value[4:8], value[8:]]), "IN_AADHAAR", fmt, "IN")

    def pan(self, person: dict) -> Pii:
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        initial = ascii_fold(person["last"])[0].upper()
        value = "".join(self.choice(letters) for _ in range(3)) + "P" + initial + self.digits(4) + self.choice(letters)
        return Pii(value, "IN_PAN", "plain", "IN")

    def nino(self) -> Pii:
        while True:
            prefix = self.choice(_NINO_FIRST) + self.choice(_NINO_SECOND)
            if prefix not in _NINO_BAD:
                break
        digits, suffix = self.digits(6), self.choice("ABCD")
        spaced = self.chance(0.5)
        value = f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}" if spaced else f"{prefix}{digits}{suffix}"
        return Pii(value, "UK_NINO", "spaced" if spaced else "compact", "UK")

    def ip(self) -> Pii:
        if self.chance(0.2):
            groups = ["2a02", f"{self.randint(0x8000, 0x8FFF):x}"] + [f"{self.randint(1, 0xFFFF):x}" for _ in range(6)]
            return Pii(":".join(groups), "IP_ADDRESS", "ipv6", "")
        first = self.choice(
            [24, 31, 37, 46, 62, 73, 77, 81, 82, 84, 86, 88, 90, 91, 93, 94, 95, 98, 109, 151, 176, 178]
        )
        return Pii(
            f"{first}.{self.randint(0, 255)}.{self.randint(0, 255)}.{self.randint(1, 254)}", "IP_ADDRESS", "ipv4", ""
        )


# ------------------------------------------------------------------------------------- positive records
def _fill(template: str, **slots) -> list:
    """`template` with each `{slot}` replaced by its Pii (or list of parts)."""
    out: list = []
    for i, piece in enumerate(re.split(r"\{(\w+)\}", template)):
        if i % 2 == 0:
            if piece:
                out.append(piece)
        else:
            value = slots[piece]
            out.extend(value if isinstance(value, list) else [value])
    return out


PROBLEMS = (
    "My order hasn't arrived yet.",
    "I was charged twice for my subscription this month.",
    "I can't log in to my account since yesterday.",
    "The replacement headphones you sent are also faulty.",
    "I need to update my billing details.",
    "Please close my account and delete my data.",
    "My package was delivered to the wrong address.",
    "The invoice shows the wrong company name.",
    "I want a refund for the annual plan.",
    "Two-factor codes never arrive on my phone.",
    "The app crashes every time I open the settings page.",
    "I returned the blender three weeks ago and still have no refund.",
    "Can you change the delivery date for my next box?",
    "Your courier left the parcel outside in the rain.",
    "I need a copy of last year's invoices for my accountant.",
    "The discount code from your newsletter doesn't work.",
    "My account was locked after a password reset.",
    "I'd like to upgrade to the family plan.",
)
ACKS = (
    "thanks for getting in touch.",
    "sorry for the trouble with your order.",
    "I've looked into your account.",
    "thanks for your patience while I checked this.",
    "I understand how frustrating this is.",
)
CLOSINGS = (
    "Is there anything else I can help with?",
    "Let me know if anything else comes up.",
    "Have a great day!",
    "You'll get an email confirmation shortly.",
    "",
)


def _name_form(gen: _Gen, full_share: float) -> str:
    return "full" if gen.chance(full_share) else "first"


def _maybe_lower(gen: _Gen, parts: list, p: float = 0.15) -> list:
    return _lower(parts) if gen.chance(p) else parts


def _snip_name_cue(gen: _Gen, ctx: dict) -> list:
    form = _name_form(gen, 0.7)
    name = gen.name(ctx["person"], form, "after cue")
    template = gen.choice(
        [
            "Hi, my name is {n}.",
            "This is {n} here.",
            "I'm {n}, the account holder.",
            "Account holder: {n}.",
            "My name is {n} and I placed the order last week.",
            "Hello, {n} speaking.",
            "The account is under the name {n}.",
        ]
    )
    ctx["named"] = form
    return _fill(template, n=name)


def _snip_name_lower_cue(gen: _Gen, ctx: dict) -> list:
    form = _name_form(gen, 0.6)
    template = gen.choice(
        [
            "hi im {n},",
            "hey this is {n} -",
            "my name is {n} btw.",
            "hello its {n} again.",
            "name's {n}.",
            "i am {n} and",
        ]
    )
    ctx["named"] = form
    return _lower(_fill(template, n=gen.name(ctx["person"], form, "after cue")))


def _snip_name_no_cue(gen: _Gen, ctx: dict) -> list:
    other = gen.person()
    ctx["third"] = other
    form = _name_form(gen, 0.75)
    name = gen.name(other, form, "no cue")
    template = gen.choice(
        [
            "Please tell {n} their order shipped.",
            "Can you cc {n} on this ticket?",
            "{n} says the invoice is wrong.",
            "Forward the receipt to {n} in accounting.",
            "Add {n} as a second user on the account.",
            "The parcel was signed for by {n}, who doesn't live here.",
            "{n} and I share this subscription.",
            "Send the refund confirmation to {n} as well.",
        ]
    )
    return _fill(template, n=name)


def _snip_address(gen: _Gen, ctx: dict) -> list:
    country = gen.choice(ADDRESS_COUNTRIES)
    ctx["address"] = gen.address(country)
    template = gen.choice(
        [
            "Please ship the replacement to {a}.",
            "My new address is {a}.",
            "I moved to {a} last month, please update it.",
            "Deliver to {a}, use the side door.",
            "Billing address: {a}",
        ]
    )
    return _maybe_lower(gen, _fill(template, a=ctx["address"]))


def _snip_postcode(gen: _Gen, ctx: dict) -> list:
    country = gen.choice(ADDRESS_COUNTRIES)
    city, _, postcode = gen.city_postcode(country)
    pc = Pii(postcode, "POSTCODE", f"{country} with context", country)
    template = {
        "US": [
            "My zip code is {p}.",
            "ZIP: {p}, if that matters for shipping.",
            "is next-day delivery available to zip {p}?",
        ],
        "UK": [
            "My postcode is {p}, does that get next-day delivery?",
            "postcode {p}",
            "Is {p} inside your delivery area?",
        ],
        "DE": ["I'm in {c} {p}.", "PLZ {p}, {c}.", "Postleitzahl {p} – do you deliver there?"],
        "FR": ["J'habite à {p} {c}.", "code postal {p}", "I'm at {p} {c}, is pickup possible?"],
    }[country]
    return _fill(gen.choice(template), p=pc, c=city)


def _snip_home_city(gen: _Gen, ctx: dict) -> list:
    if gen.chance(0.3):
        city = gen.city_postcode(gen.choice(ADDRESS_COUNTRIES))[0]
    else:
        city = Pii(gen.choice(gen.home_cities), "LOCATION", "home city", "")
    city = Pii(city.value, "LOCATION", "lives in", city.origin)
    ctx["city"] = city
    template = gen.choice(
        [
            "I live in {c}.",
            "I'm based in {c}, so the time zone matters.",
            "We moved to {c} in March.",
            "I'm from {c}, will the store there have it?",
            "Ship it to my place in {c}.",
            "i live in {c} lol",
        ]
    )
    parts = _fill(template, c=city)
    return _lower(parts) if template.startswith("i live") else parts


def _snip_phone(gen: _Gen, ctx: dict) -> list:
    phone = gen.phone(gen.choice(PHONE_COUNTRIES))
    ctx["phone"] = phone
    template = gen.choice(
        [
            "Call me on {p}.",
            "My number is {p}.",
            "You can reach me at {p} after 5pm.",
            "Tel: {p}",
            "whatsapp me on {p}",
            "My new mobile is {p}, the old one is disconnected.",
        ]
    )
    return _fill(template, p=phone)


def _snip_email(gen: _Gen, ctx: dict) -> list:
    email = gen.email(ctx["person"])
    ctx["email"] = email
    template = gen.choice(
        [
            "My email is {e}.",
            "Please send the invoice to {e}.",
            "{e} is the login I use.",
            "contact: {e}",
            "i changed my email to {e} yesterday",
        ]
    )
    return _fill(template, e=email)


_ID_TEMPLATES = {
    "card": [
        "My card {x} was charged twice.",
        "Card number {x}, expiry 09/27.",
        "I paid with {x} but the order still says pending.",
        "please remove the card {x} from my account",
    ],
    "iban": [
        "My IBAN is {x} please refund the difference.",
        "Refund to {x} thanks.",
        "IBAN {x} (account in my name), can you confirm once sent?",
        "Please use IBAN: {x} for the payout.",
    ],
    "ssn": [
        "My SSN is {x}.",
        "social security number {x} for the tax form",
        "The W-9 needs my SSN, it's {x}.",
        "SSN: {x}",
    ],
    "dob": [
        "My date of birth is {x}.",
        "DOB: {x}",
        "I was born on {x}.",
        "born {x}, in case you need it for verification",
        "date of birth {x}",
    ],
    "fr_nir": [
        "Mon numéro de sécurité sociale est le {x}.",
        "My French social security number (NIR) is {x}.",
        "numéro de sécu : {x}",
        "NIR {x} for the health insurance form.",
    ],
    "de_tax_id": [
        "Meine Steuer-ID ist {x}.",
        "My German tax ID (Steuer-ID) is {x}.",
        "Steueridentifikationsnummer: {x}",
        "tax identification number {x}",
    ],
    "in_aadhaar": ["My Aadhaar number is {x}.", "aadhaar no {x} for KYC", "Aadhaar: {x}"],
    "in_pan": ["PAN: {x}", "my PAN card number is {x}", "PAN {x} for the GST invoice."],
    "uk_nino": ["My National Insurance number is {x}.", "NI number: {x}", "NINO {x}"],
    "ip": [
        "My home IP is {x}.",
        "Our router's public IP is {x}.",
        "The login from {x} was me.",
        "Can you whitelist {x}? It's my home connection.",
    ],
}


def _id_snippet(kind: str):
    def snippet(gen: _Gen, ctx: dict) -> list:
        draw = {
            "card": gen.card,
            "iban": gen.iban,
            "ssn": gen.ssn,
            "dob": gen.dob,
            "fr_nir": gen.nir,
            "de_tax_id": gen.steuer_id,
            "in_aadhaar": gen.aadhaar,
            "in_pan": lambda: gen.pan(ctx["person"]),
            "uk_nino": gen.nino,
            "ip": gen.ip,
        }[kind]
        value = draw()
        ctx.setdefault("ids", []).append(value)
        return _fill(gen.choice(_ID_TEMPLATES[kind]), x=value)

    return snippet


SNIPPETS = {
    "name_cue": _snip_name_cue,
    "name_lower_cue": _snip_name_lower_cue,
    "name_no_cue": _snip_name_no_cue,
    "name_signoff": None,  # placed at the end of the prompt
    "address": _snip_address,
    "postcode": _snip_postcode,
    "home_city": _snip_home_city,
    "phone": _snip_phone,
    "email": _snip_email,
    **{kind: _id_snippet(kind) for kind in _ID_TEMPLATES},
}


def _signoff(gen: _Gen, ctx: dict) -> list:
    person = ctx["person"]
    # After an introduction, the same form of the name (a first name inside the full one would be the same
    # string in two spans of different values, which the scorer cannot tell apart).
    form = ctx.get("named") or _name_form(gen, 0.5)
    name = gen.name(person, form, "sign-off")
    template = gen.choice(["\n\nThanks,\n{n}", "\n\ncheers, {n}", "\n— {n}", "\n\nBest regards,\n{n}", "\nthx {n}"])
    parts = _fill(template, n=name)
    return _lower(parts) if "cheers" in template or "thx" in template else parts


def _echo(gen: _Gen, ctx: dict) -> list[list]:
    """Sentences of the assistant's answer that repeat what the user gave."""
    out = []
    if "email" in ctx:
        out.append(
            _fill(gen.choice(["I've sent the confirmation to {v}.", "Your login {v} is verified."]), v=ctx["email"])
        )
    if "phone" in ctx:
        out.append(
            _fill(gen.choice(["Our courier will call {v} before delivery.", "We'll text {v} a code."]), v=ctx["phone"])
        )
    if "address" in ctx:
        out.append(_fill("The replacement will be shipped to {a}.", a=ctx["address"]))
    if "city" in ctx:
        out.append(_fill("Our nearest store to {v} is open until 8pm.", v=ctx["city"]))
    if "third" in ctx:
        out.append(_fill("I've let {v} know.", v=gen.name(ctx["third"], "first", "echo")))
    for value in ctx.get("ids", []):
        template = {
            "CREDIT_CARD": "I can see both charges on {v}; the second one is reversed.",
            "IBAN_CODE": "The refund will reach {v} within 5 business days.",
            "DATE_OF_BIRTH": "Your date of birth ({v}) matches our records.",
            "IP_ADDRESS": "I've added {v} to the allow-list.",
        }.get(value.type, "I've noted {v} on your file.")
        out.append(_fill(template, v=value))
    return out


def positive_parts(gen: _Gen, kinds: list[str]) -> dict[str, list | None]:
    """One positive record's prompt, completion and (a third of the time) edited completion, as parts."""
    ctx: dict = {"person": gen.person()}
    problem = gen.choice(PROBLEMS)
    body = [part for kind in kinds if SNIPPETS[kind] is not None for part in [" ", *SNIPPETS[kind](gen, ctx)]]
    prompt = [problem, *body]
    if kinds and kinds[0].startswith("name_") and SNIPPETS[kinds[0]] is not None and gen.chance(0.5):
        prompt = [*body[1:], " ", problem]  # the introduction first
    if "name_signoff" in kinds or gen.chance(0.15):
        prompt += _signoff(gen, ctx)

    echoes = _echo(gen, ctx)
    picked = [echoes[int(i)] for i in sorted(gen.rng.permutation(len(echoes))[: gen.randint(1, 2)])] if echoes else []
    greeting = (
        _fill(gen.choice(["Hi {n}, ", "Hello {n}, ", "Dear {n}, "]), n=gen.name(ctx["person"], "first", "greeting"))
        if gen.chance(0.5)
        else []
    )
    ack = gen.choice(ACKS)
    opening = [*greeting, ack] if greeting else [ack[0].upper() + ack[1:]]
    closing = gen.choice(CLOSINGS)
    completion = [*opening, *[p for sentence in picked for p in [" ", *sentence]], *([" ", closing] if closing else [])]
    edited = None
    if gen.chance(0.35):
        agent = gen.person()
        extra = gen.choice(
            [
                _fill(
                    "\n\nIf it happens again, call me directly on {p}.\n\nBest,\n{n}",
                    p=gen.phone(gen.choice(PHONE_COUNTRIES)),
                    n=gen.name(agent, "full", "agent signature"),
                ),
                _fill(
                    "\n\nKind regards,\n{n}, Customer Care", n=gen.name(agent, _name_form(gen, 0.5), "agent signature")
                ),
                _fill(" I've also copied {n} from our billing team.", n=gen.name(agent, "full", "no cue")),
            ]
        )
        edited = [*opening, *[p for sentence in echoes[:2] for p in [" ", *sentence]], *extra]
    return {"prompt": prompt, "completion": completion, "edited_completion": edited}


# ------------------------------------------------------------------------------------- negative records
FIGURES = (
    ("Abraham Lincoln", "the 16th president of the United States, who led the country through the Civil War"),
    ("Marie Curie", "a physicist and chemist who won Nobel Prizes in both physics and chemistry"),
    ("Nelson Mandela", "South Africa's first Black president, elected in 1994"),
    ("Ada Lovelace", "a mathematician often called the first computer programmer"),
    ("Albert Einstein", "the physicist who developed the theory of relativity"),
    ("Mahatma Gandhi", "the leader of India's non-violent independence movement"),
    ("Frida Kahlo", "a Mexican painter known for her self-portraits"),
    ("Isaac Newton", "the mathematician who formulated the laws of motion and universal gravitation"),
    ("Cleopatra", "the last active ruler of the Ptolemaic Kingdom of Egypt"),
    ("Napoleon Bonaparte", "a French military leader who crowned himself emperor in 1804"),
    ("Confucius", "a Chinese philosopher of the Spring and Autumn period"),
    ("Martin Luther King Jr.", "a leader of the American civil rights movement"),
    ("William Shakespeare", "an English playwright and poet"),
    ("Leonardo da Vinci", "an Italian Renaissance painter, engineer and inventor"),
    ("Queen Victoria", "the British monarch from 1837 to 1901"),
    ("Alan Turing", "a mathematician who laid the foundations of computer science"),
)
FIGURE_QUESTIONS = (
    "Who was {f}?",
    "What is {f} famous for?",
    "Can you summarise {f}'s life in two sentences?",
    "Why is {f} important in history?",
)
BIG_CITIES = (
    "Paris Berlin London Tokyo Rome Madrid Cairo Sydney Toronto Mumbai Beijing Moscow Istanbul Lagos Seoul".split()
)
PLACE_FACTS = (
    ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney."),
    ("How tall is Mount Everest?", "Mount Everest is 8,849 metres tall according to the 2020 survey."),
    ("Which river flows through Cairo?", "The Nile flows through Cairo on its way to the Mediterranean."),
    ("Is the Sahara bigger than the United States?", "The Sahara is slightly smaller than the United States."),
    ("Where is the Eiffel Tower?", "The Eiffel Tower stands on the Champ de Mars in Paris, France."),
    ("What's the longest river in South America?", "The Amazon is the longest river in South America."),
)
CODE = (
    (
        'My Flask app won\'t start: app.run(host="127.0.0.1", port={port}) says the address is in use.',
        "Another process is listening on 127.0.0.1:{port}; stop it or call app.run(port={port2}).",
    ),
    (
        "Why does os.path.join(BASE_DIR, 'static', 'css') return an absolute path on Windows?",
        "os.path.join discards earlier parts when a later one is absolute; check that 'static' has no leading slash.",
    ),
    (
        "pip says requests=={v} conflicts with urllib3<2. How do I fix it?",
        "Pin urllib3 to 1.26.18 or upgrade requests past {v}; run pip install -U requests.",
    ),
    (
        "Our build is tagged {v4} but the API still reports {v}. Where does it read the version?",
        "It reads __version__ from the package's __init__.py; bump it there and rebuild.",
    ),
    (
        "docker run -p {port}:80 nginx:1.25 exits immediately, what am I missing?",
        "Add -d to run it detached and check docker logs; nginx needs its config mounted read-only.",
    ),
    (
        "SELECT id, created_at FROM orders WHERE total > 100 ORDER BY created_at DESC LIMIT 50; is slow.",
        "Add an index on (created_at) and make sure total has one too: CREATE INDEX ON orders (created_at);",
    ),
    (
        "psql can't connect to localhost:5432, it says connection refused.",
        "Start the server with pg_ctl start, or check that listen_addresses includes localhost.",
    ),
    (
        "git checkout -b feature/login-fix fails with 'not a git repository'.",
        "Run git init first, or cd into the folder that holds the .git directory.",
    ),
    (
        "How do I read a JSON file in Python? json.load(open('config.json')) feels wrong.",
        "Use a context manager: with open('config.json') as f: data = json.load(f).",
    ),
    (
        "curl http://0.0.0.0:{port}/health returns 502 behind the load balancer.",
        "Bind the app to 0.0.0.0 inside the container and point the health check at /health on port {port}.",
    ),
)
PRODUCTS = "Docker Kubernetes Chrome Firefox Slack Excel PowerPoint Jira Zoom Photoshop PostgreSQL Terraform".split()
PLATFORMS = ("Windows 11", "macOS Sonoma", "Ubuntu 24.04", "an M2 MacBook Air", "a Chromebook")
LINKS = (
    ("Is https://en.wikipedia.org/wiki/{t} a reliable source for a school essay?", "Wikipedia is a good start"),
    ("Where do I register a drone? I found www.faa.gov but got lost.", "Use the FAADroneZone portal on faa.gov"),
    ("The docs at https://docs.python.org/3/library/os.path.html mention normpath.", "normpath collapses '..'"),
    ("Is https://status.aws.amazon.com showing an outage right now?", "I can't check live pages"),
    ("Can I link to https://github.com/pandas-dev/pandas/issues in our README?", "Yes, public links are fine"),
    ("Does www.bbc.co.uk/news have an RSS feed?", "Yes, BBC News publishes RSS feeds per section"),
)
TOPICS = ("Abraham_Lincoln", "Photosynthesis", "Eiffel_Tower", "Python_(programming_language)", "Roman_Empire")
HISTORY = (
    ("What happened on July 20, 1969?", "Apollo 11 landed on the Moon on July 20, 1969."),
    ("When did the Berlin Wall fall?", "The Berlin Wall fell on 9 November 1989."),
    ("When was the Magna Carta sealed?", "King John sealed the Magna Carta on 15 June 1215."),
    ("When did World War II end in Europe?", "It ended with Germany's surrender on 8 May 1945."),
    ("When was the Declaration of Independence adopted?", "The Continental Congress adopted it on July 4, 1776."),
    ("When did the Titanic sink?", "The Titanic sank in the early hours of 15 April 1912."),
    ("When was the first iPhone released?", "Apple released the first iPhone on June 29, 2007."),
)
SENTENCE_START = (
    ("Broken checkout button on mobile.", "Thanks, we've reproduced the broken button and a fix ships this week."),
    (
        "Email notifications stopped arriving after the update.",
        "Email delivery was paused by the update; it's back on.",
    ),
    ("Billing page shows the old plan.", "Billing caches the plan for an hour; it should show the new one now."),
    ("Export to CSV times out for large projects.", "Exports over 50k rows now run in the background."),
    ("Password reset link expired immediately.", "Reset links last 30 minutes; please request a new one."),
    ("Search results are empty for some queries.", "Search was reindexing; results should be back."),
    ("Dark mode resets every time I log in.", "Dark mode is stored per device; enable sync in Settings."),
    ("Invoice download gives a blank page.", "Invoice downloads need pop-ups allowed for our site."),
)


def negative_record(gen: _Gen, category: str) -> tuple[str, str, str | None]:
    """A record with no personal data, of one category: (prompt, completion, edited completion or None)."""
    if category == "public_figures":
        name, desc = gen.choice(FIGURES)
        prompt = gen.choice(FIGURE_QUESTIONS).format(f=name)
        completion = f"{name} was {desc}."
    elif category == "places":
        if gen.chance(0.5):
            a, b = gen.shuffled(list(BIG_CITIES))[:2]
            prompt = gen.choice([f"Is {a} bigger than {b}?", f"Which has more people, {a} or {b}?"])
            completion = f"It depends on where you draw the city limits; {a} and {b} both count their metro areas."
        else:
            prompt, completion = gen.choice(PLACE_FACTS)
    elif category == "code":
        prompt, completion = gen.choice(CODE)
        slots = {
            "port": gen.choice(["8000", "8080", "5000", "3000"]),
            "port2": "8001",
            "v": f"2.{gen.randint(20, 32)}.{gen.randint(0, 9)}",
            "v4": f"{gen.randint(1, 4)}.{gen.randint(0, 9)}.{gen.randint(0, 9)}.{gen.randint(1, 99)}",
        }
        prompt, completion = prompt.format(**slots), completion.format(**slots)
    elif category == "products":
        a, b = gen.shuffled(list(PRODUCTS))[:2]
        platform = gen.choice(PLATFORMS)
        prompt, completion = gen.choice(
            [
                (f"Does {a} run on {platform}?", f"Yes, {a} supports {platform}; install it from the vendor's site."),
                (f"Should our team use {a} or {b}?", f"{a} and {b} solve different problems; many teams use both."),
                (f"How do I update {a}?", f"{a} updates itself; you can also check for updates in its Help menu."),
            ]
        )
    elif category == "public_links":
        prompt, completion = gen.choice(LINKS)
        prompt, completion = prompt.format(t=gen.choice(TOPICS)), completion + "."
    elif category == "history":
        prompt, completion = gen.choice(HISTORY)
    elif category == "order_numbers":
        number = gen.choice(
            [
                f"Order #{gen.digits(8)}",
                f"Invoice INV-{gen.randint(2019, 2026)}-{gen.digits(6)}",
                f"Ticket {gen.randint(1, 9)}{gen.digits(6)}",
                f"RMA-{gen.digits(5)}",
                f"PO 4500{gen.digits(6)}",
            ]
        )
        prompt = gen.choice(
            [f"{number} hasn't shipped yet.", f"{number} shows the wrong total.", f"Status of {number}?"]
        )
        completion = f"{number} left our warehouse on Tuesday; tracking updates within 24 hours."
    elif category == "passwords":
        common = gen.shuffled(["123456789", "qwerty", "password1", "111111", "iloveyou", "12345678", "abc123"])[:4]
        prompt = f"Are these still the most common passwords: {', '.join(common)}?"
        completion = f"Yes, {common[0]} and {common[1]} top most breach lists; use a password manager instead."
    elif category == "sentence_start":
        prompt, completion = gen.choice(SENTENCE_START)
    else:  # numbers_versions
        prompt = gen.choice(
            [
                f"Our cluster has 3 nodes with {gen.choice(['64', '128', '256'])} GB RAM each; is 1.2.3.4 the latest?",
                f"The price went from $1,299.99 to ${gen.randint(900, 1199)}.00 overnight, why?",
                f"Set the timeout to {gen.randint(10, 60)}000 ms and retries to 3?",
                "Build 20250114.2 fails on step 7 of 12.",
                f"Is version {gen.randint(1, 9)}.{gen.randint(0, 20)}.{gen.randint(0, 9)} compatible with Python 3.11?",
            ]
        )
        completion = "Yes; the changelog lists every release with its date and the minimum supported versions."
    if gen.chance(0.4):
        extra, _ = gen.choice(SENTENCE_START)
        prompt = f"{prompt} Also: {extra}"
    edited = completion + " Hope that helps!" if gen.chance(0.2) else None
    return prompt, completion, edited
