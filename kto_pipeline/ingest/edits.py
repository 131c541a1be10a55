"""When a user's edit of a response counts as a training signal."""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

_WS = re.compile(r"\s+")


def normalise_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def edit_distance(original: str, edited: str) -> float:
    """Normalised Levenshtein distance (0 = same, 1 = nothing shared), ignoring whitespace."""
    return Levenshtein.normalized_distance(normalise_whitespace(original), normalise_whitespace(edited))


def is_trivial_edit(original: str, edited: str, min_distance: float) -> bool:
    """An edit below `min_distance` (whitespace, a typo) says too little to train on.

    The default threshold (0.02) keeps a one-word fix in a 300-character answer (about 0.02 to
    0.03) and drops whitespace changes and one-character typo fixes in answers over 50 characters.
    """
    return edit_distance(original, edited) < min_distance
