"""Shared pieces: the YAML data file, word lists read from it, regex flags and small regex builders."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import regex
import yaml
from presidio_analyzer import RecognizerResult

DEFAULT_YAML = Path(__file__).parent.with_name("default_recognizers.yaml")
FLAGS = regex.IGNORECASE | regex.MULTILINE
ENHANCED = RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY
CONTEXT_SCORE = 0.85


def yaml_file(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def allow_words_from_yaml(path: str | Path) -> tuple[str, ...]:
    """The `allow_words` list of a recognizers YAML (empty when it has none)."""
    return tuple(str(w) for w in yaml_file(str(path)).get("allow_words") or ())


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Lower-case words that are not names: spaCy's English stop words and the YAML's `common_words`."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(str(yaml_file(str(DEFAULT_YAML)).get("common_words", "")).split()) | frozenset(STOP_WORDS)


@lru_cache(maxsize=32)
def allow_set(extra: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w.lower() for w in allow_words_from_yaml(DEFAULT_YAML) + extra)


def alternation(words: Iterable[str]) -> str:
    parts = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    return "|".join(regex.escape(p).replace(r"\ ", r"\s+") for p in parts)


def words_regex(words: Iterable[str]) -> regex.Pattern:
    """Any of `words` as a whole word (multi-word phrases with any whitespace), case-insensitive."""
    return regex.compile(r"(?<![^\W_])(?:" + alternation(words) + r")(?![^\W_])", FLAGS)


def digits_of(text: str) -> str:
    return "".join(c for c in text if c.isdigit())
