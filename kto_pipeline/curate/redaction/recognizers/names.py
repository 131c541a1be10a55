"""PERSON after a cue ("my name is", "i'm", "this is", "dear", "hi <name>,", sign-offs), in any case."""

from __future__ import annotations

from collections.abc import Sequence

import regex
from presidio_analyzer import AnalysisExplanation, EntityRecognizer, LocalRecognizer, RecognizerResult

from kto_pipeline.curate.redaction.recognizers.words import ENHANCED, FLAGS, allow_set, common_words

_TITLE = r"(?:(?:mr|mrs|ms|miss|mx|dr|prof)\.?[ \t]+)?"
# (cue, score, what must follow the name). Modes: "free" anything; "weak" (a common phrase: "this is normal
# with", "It's pure Python") anything after a capitalised name, but after a lower-case one only punctuation, the
# end, or a word that goes on an introduction ("this is anna from", "i am lukas weber and"); "greet" punctuation
# or a line end ("hi anna,"); "end" a line end, comma or full stop (sign-offs: "cheers, anna"); "capital" a
# capitalised name followed by punctuation or a word of the request ("cc Daiki on this", "let Tunde know").
_CUES: tuple[tuple[str, float, str], ...] = (
    (r"\bmy[ \t]+(?:full[ \t]+)?name[ \t]*(?:is|['’]s|:)[ \t]*" + _TITLE, 0.85, "free"),
    (
        r"(?<!\b(?:the|file|user|company|product|its|whose|domain|host|app|account|folder|project)[ \t]+)"
        r"\bname['’]s[ \t]+",
        0.85,
        "free",
    ),
    (r"\b(?:full|first|last|customer|contact|cardholder|card[ \t]+holder)[ \t]+name[ \t]*:[ \t]*", 0.85, "free"),
    (r"\baccount[ \t]+holder[ \t]*(?::|is)[ \t]*" + _TITLE, 0.85, "free"),
    (r"\b(?:under|in)[ \t]+the[ \t]+name[ \t]+(?:of[ \t]+)?" + _TITLE, 0.85, "free"),
    # "name: str" and "name: Ruff" (code, YAML) are not people: two words at least.
    (r"(?:^|(?<=\n))[ \t]*name[ \t]*:[ \t]*(?=[^\W\d_][\w'’-]*[ \t]+[^\W\d_][\w'’-]*[ \t]*(?:$|\n|,))", 0.85, "free"),
    (r"\b(?:call[ \t]+me|i[ \t]+go[ \t]+by)[ \t]+", 0.75, "weak"),
    (r"\bdear[ \t]+" + _TITLE, 0.7, "free"),
    (r"\b(?:i['’]?m|i[ \t]+am)[ \t]+", 0.6, "weak"),
    (r"\bthis[ \t]+is[ \t]+", 0.6, "weak"),
    (r"\b(?:hi|hello|hey)\b[ \t,!]*it['’]?s[ \t]+", 0.6, "weak"),
    (
        r"(?:^|(?<=[\n.!?][ \t]*))(?:hi|hello|hey|hiya|good[ \t]+(?:morning|afternoon|evening))\b[ \t]*,?[ \t]*",
        0.7,
        "greet",
    ),
    (
        r"\b(?:kind[ \t]+regards|best[ \t]+regards|warm[ \t]+regards|many[ \t]+thanks|thanks[ \t]+again"
        r"|thank[ \t]+you|yours[ \t]+(?:truly|sincerely)|all[ \t]+the[ \t]+best|best[ \t]+wishes|regards"
        r"|sincerely|cheers|thanks|thx|ty|signed)\b[ \t]*[,.!]?[ \t]*\n?[ \t]*|\bbest[ \t]*(?:,[ \t]*\n?|\n)[ \t]*",
        0.75,
        "end",
    ),
    (r"(?:^|(?<=\n))[ \t]*(?:—|–|--|~)[ \t]*", 0.75, "end"),
    # Someone else named in a request ("cc Daiki", "let Tunde know", "signed for by Ana Ruiz"): capitalised
    # names only, as "ask questions" and "tell support" read the same in lower case.
    (
        r"\b(?:b?cc(?:['’]?d)?|copied|copying|loop(?:ed)?[ \t]+in|tell|ask|remind|let"
        r"|signed[ \t]+for[ \t]+by|on[ \t]+behalf[ \t]+of|(?:spoke|spoken|talked|speak|talk)[ \t]+(?:with|to))"
        r"[ \t]*:?[ \t]+" + _TITLE,
        0.6,
        "capital",
    ),
)
_INTRO_END = r"[ \t]*(?:[,.!?;:\-–—)]|$|\n|(?:from|here|speaking|and|again|btw|calling|writing|i|my)\b)"
_AFTER = {
    "free": None,
    "weak": regex.compile(_INTRO_END, FLAGS),
    "greet": regex.compile(r"[ \t]*(?:[,!.:;\-–—]|$|\n|(?:speaking|here)\b)", FLAGS),
    "end": regex.compile(r"[ \t]*(?:[,!.]|$|\n)", FLAGS),
    "capital": regex.compile(
        r"[ \t]*(?:[,.!?;:)]|$|\n|(?:to|that|about|if|when|know|as|on|from|in|and|at|for)\b)", FLAGS
    ),
}
_NAME_TOKEN = regex.compile(r"[^\W\d_](?:[\w'’-]*[^\W\d_])?(?:['’]s)?")
_GAP = regex.compile(r"[ \t]+")
_WORDISH_ENDINGS = ("able", "ible", "ful", "less", "ness", "ment", "tion", "sion", "ized", "ised", "ated")


def _wordish(word: str) -> bool:
    """A lower-case word whose ending makes it a verb, adjective or adverb rather than a name (lengths keep
    Emily, Clive, Vincent, Ahmed, Mohammed, Naveed out)."""
    n = len(word)
    return (
        (n >= 5 and word.endswith(("ing", "ous")))
        or (n >= 6 and word.endswith("ed") and not word.endswith(("eed", "med")))
        or (n >= 6 and word.endswith(_WORDISH_ENDINGS))
        or (n >= 7 and word.endswith(("ive", "ity", "al")))
        or (n >= 8 and word.endswith(("ly", "ent", "ant")))
    )


class NameCueRecognizer(LocalRecognizer):
    """PERSON: one to three name-like words right after a cue, in any case ("hi im priya sharma, ...").

    A word is not name-like when it is a stop word, a common word (the YAML's `common_words`) or an allow-listed
    product; after a weaker cue ("i'm", "this is", "dear", "call me", a greeting) neither is a lower-case word
    that ends like a verb or adjective (-ing, -ed, -able, -ous, ...). So "i'm fine", "i'm trying", "this is
    broken", "dear support team" find nothing, while "Hello Yuting," and "my name is zhou yuting" do.
    """

    def __init__(self, supported_language: str = "en", allow_words: Sequence[str] = ()):
        super().__init__(supported_entities=["PERSON"], supported_language=supported_language)
        self._cues = [(regex.compile(c, FLAGS), score, mode) for c, score, mode in _CUES]
        self._not_names = common_words() | allow_set(tuple(allow_words))

    def load(self) -> None:
        pass

    def _not_name(self, word: str, strong: bool) -> bool:
        low = word.lower()
        return len(low) < 2 or low in self._not_names or (not strong and word.islower() and _wordish(low))

    def name_at(self, text: str, pos: int, mode: str, strong: bool = False) -> tuple[int, int] | None:
        """The span of the name that starts at `pos`, if any; `strong` cues skip the suffix rules."""
        spans: list[tuple[int, int]] = []
        while len(spans) < 3:
            m = _NAME_TOKEN.match(text, pos)
            if not m:
                break
            word, possessive = m.group(), m.group().lower().endswith(("'s", "’s"))
            core = word[:-2] if possessive else word
            if self._not_name(core, strong) or (mode == "capital" and not core[0].isupper()):
                break
            spans.append((m.start(), m.start() + len(core)))
            gap = _GAP.match(text, m.end())
            if possessive or not gap:
                break
            pos = gap.end()
        after = _AFTER[mode]
        if mode == "weak" and spans and text[spans[0][0]].isupper():
            after = None  # a capitalised word after "this is" / "i'm" is a name whatever follows
        if not spans or (after is not None and not after.match(text, spans[-1][1])):
            return None
        return spans[0][0], spans[-1][1]

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for cue, score, mode in self._cues:
            for m in cue.finditer(text):
                span = self.name_at(text, m.end(), mode, strong=score >= 0.85)
                if span is None:
                    continue
                explanation = AnalysisExplanation(
                    recognizer=self.name, original_score=score, textual_explanation=f"name after {m.group()!r}"
                )
                metadata = {
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    ENHANCED: True,
                }
                results.append(RecognizerResult("PERSON", *span, score, explanation, metadata))
        return EntityRecognizer.remove_duplicates(results)
