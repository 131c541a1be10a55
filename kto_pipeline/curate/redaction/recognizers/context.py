"""Context read from the raw text around a hit (`WindowContext`), and a PatternRecognizer that uses it.

Presidio's own context enhancer reads spaCy lemmas: with the no_op NLP engine it sees no context at all, it looks
five words back only, and it matches context words as substrings ("zip" in "zipper"). These recognizers read
context from the text itself, so they behave the same with or without spaCy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult

from kto_pipeline.curate.redaction.recognizers.words import CONTEXT_SCORE, ENHANCED, FLAGS, words_regex

# A sentence ends at ! ? or a full stop that does not close an abbreviation ("no.", "St.", "d.o.b.").
_BREAK = regex.compile(
    r"(?<!(?<![^\W_])(?:no|nr|nos|st|dr|mr|mrs|ms|vs|etc|approx|tel|ca|incl|ref|[a-z]))\.(?=\s|$)"
    r"|[!?](?=\s|$)|\n\s*\n",
    FLAGS,
)
# Between a street line and its postcode: commas and up to three words (city, state).
_RELATED_GAP = regex.compile(r"[\s,]*(?:[^\W\d_][\w.'’-]*,?\s+){0,3}", FLAGS)


class WindowContext:
    """Context read from the raw text around a hit, so it works without spaCy; mixed into a Presidio recognizer.

    A context word counts within `before` characters ahead of the hit (or `after` behind it) when no sentence
    ends in between; a hit of a `related` type ending just before (commas and up to three words apart) counts
    too. Found: the score rises to `context_score`. Not found: the hit is dropped when context is `required`.
    """

    def _init_window(
        self,
        context: Sequence[str],
        *,
        required: bool,
        before: int = 48,
        after: int = 0,
        context_score: float = CONTEXT_SCORE,
        related: Sequence[str] = (),
    ) -> None:
        self.context_required = required
        self.before, self.after, self.context_score, self.related = before, after, context_score, tuple(related)
        self._context_re = words_regex(context) if context else None

    def context_near(self, text: str, start: int, end: int, others: Sequence[RecognizerResult] = ()) -> bool:
        if self._context_re is not None:
            for m in self._context_re.finditer(text, max(0, start - self.before), start):
                if not _BREAK.search(text, m.end(), start):
                    return True
            if self.after:
                for m in self._context_re.finditer(text, end, min(len(text), end + self.after)):
                    if not _BREAK.search(text, end, m.start()):
                        return True
        return any(
            o.entity_type in self.related
            and o.end <= start <= o.end + self.before
            and _RELATED_GAP.fullmatch(text, o.end, start)
            for o in others
        )

    def enhance_using_context(
        self, text, raw_recognizer_results, other_raw_recognizer_results, nlp_artifacts, context=None
    ) -> list[RecognizerResult]:
        kept = []
        for res in raw_recognizer_results:
            if self.context_near(text, res.start, res.end, other_raw_recognizer_results):
                res.score = max(res.score, self.context_score)
            elif self.context_required:
                continue
            res.recognition_metadata[ENHANCED] = True
            kept.append(res)
        return kept


class ContextPatternRecognizer(WindowContext, PatternRecognizer):
    """A PatternRecognizer with `WindowContext` and an optional `invalid(text) -> bool` check."""

    def __init__(
        self,
        supported_entity: str,
        name: str,
        patterns: Sequence[Pattern],
        context: Sequence[str] = (),
        *,
        required: bool = True,
        before: int = 48,
        after: int = 0,
        context_score: float = CONTEXT_SCORE,
        related: Sequence[str] = (),
        invalid: Callable[[str], bool] | None = None,
        supported_language: str = "en",
    ):
        super().__init__(
            supported_entity=supported_entity,
            name=name,
            supported_language=supported_language,
            patterns=list(patterns),
            context=list(context) or None,
            global_regex_flags=FLAGS,
        )
        self._init_window(
            context, required=required, before=before, after=after, context_score=context_score, related=related
        )
        self._invalid = invalid

    def invalidate_result(self, pattern_text: str) -> bool:
        return bool(self._invalid and self._invalid(pattern_text))
