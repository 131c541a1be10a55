"""The text a row is compared on: normalisation, words, word shingles and the exact hash."""

from __future__ import annotations

import hashlib
import unicodedata

# Recorded in every sketch description (`sketch.sketch_spec`): changing either makes the
# stored hashes and signatures of earlier weeks incomparable.
TEXT_NORMALISATION = "nfkc-casefold-ws"
EXACT_HASH = "blake2b-128"


class _Separators(dict):
    """str.translate table: Unicode punctuation (P*) and symbols (S*) → space, lazily filled."""

    def __missing__(self, codepoint: int) -> int:
        value = 32 if unicodedata.category(chr(codepoint))[0] in "PS" else codepoint
        self[codepoint] = value
        return value


SEPARATORS = _Separators()


def normalise_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace, strip."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedup_text(prompt: str, completion: str) -> str:
    """The text a row is compared on: normalised prompt + "\\n" + normalised completion."""
    return normalise_text(prompt) + "\n" + normalise_text(completion)


def exact_hash(text: str) -> str:
    """A stable 128-bit hex digest of a dedup text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def words(text: str) -> list[str]:
    """The words of a normalised text: punctuation and symbols count as spaces."""
    return text.translate(SEPARATORS).split()


def shingles(text: str, shingle_size: int) -> list[str]:
    """Word shingles of a text (normalised first; punctuation and symbols are separators).

    A text of at most `shingle_size` words has one shingle, its whole word sequence, and a
    text without any word has one shingle, the normalised text itself. So no text has an
    empty set, and two different short texts never share a signature ("yes" vs "no").
    """
    text = normalise_text(text)
    ws = words(text)
    if not ws:
        return [text]
    if len(ws) <= shingle_size:
        return [" ".join(ws)]
    return [" ".join(ws[i : i + shingle_size]) for i in range(len(ws) - shingle_size + 1)]
