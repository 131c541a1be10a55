"""Word shingles of many texts and their xxh32 hashes, vectorised with numpy.

The same shingles as `text.shingles` (NFKC, casefold, Unicode punctuation, symbols and
whitespace as separators, words joined by one space) and the same hashes as
`xxhash.xxh32_intdigest(shingle.encode("utf-8"), seed)`, computed for a batch of texts at
once: one Unicode normalisation of the batch joined by NUL, word boundaries and the byte
spans of the shingles found with array operations, and xxh32 evaluated over all spans
together, stripe by stripe. A Python call per shingle (≈50 per 300-character text) was the
MinHash stage's hot loop; here the Python work is a few calls per batch. Tests compare
every hash with xxhash and every signature with datasketch's MinHash.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
import xxhash

from kto_pipeline.curate.dedup.text import normalise_text, shingles

_P1 = np.uint32(2654435761)
_P2 = np.uint32(2246822519)
_P3 = np.uint32(3266489917)
_P4 = np.uint32(668265263)
_P5 = np.uint32(374761393)
_SPACE = 32
_TEXT_END = 0  # NUL joins the batch: it never composes in NFKC and is neither a separator nor a space
_PAD = 16  # zero bytes after the buffer, so masked-out reads stay in bounds


def _u32(x: int) -> int:
    return x & 0xFFFFFFFF


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _words32(buf: np.ndarray) -> np.ndarray:
    """Little-endian uint32 read at every byte offset of `buf` (padded with `_PAD` zeros)."""
    b = np.concatenate([buf, np.zeros(_PAD + 3, dtype=np.uint8)]).astype(np.uint32)
    return b[:-3] | (b[1:-2] << np.uint32(8)) | (b[2:-1] << np.uint32(16)) | (b[3:] << np.uint32(24))


def xxh32_spans(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """xxh32 (`seed`) of the byte spans buf[offsets[i] : offsets[i] + lengths[i]], as uint32.

    XXH32 as its specification defines it: four accumulators over 16-byte stripes when the
    input has at least 16 bytes, then 4-byte words, then single bytes, then the avalanche.
    Every span runs the same steps with masks, so one numpy operation serves all of them.
    """
    buf = np.asarray(buf, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    w32 = _words32(buf)
    bytes_ = np.concatenate([buf, np.zeros(_PAD, dtype=np.uint8)]).astype(np.uint32)
    s = seed & 0xFFFFFFFF
    stripes = lengths // 16
    h = np.full(len(offsets), _u32(s + int(_P5)), dtype=np.uint32)
    long_ = np.flatnonzero(stripes > 0)
    if len(long_):
        pos = offsets[long_]
        n_stripes = stripes[long_]
        acc = [
            np.full(len(long_), _u32(s + int(_P1) + int(_P2)), dtype=np.uint32),
            np.full(len(long_), _u32(s + int(_P2)), dtype=np.uint32),
            np.full(len(long_), s, dtype=np.uint32),
            np.full(len(long_), _u32(s - int(_P1)), dtype=np.uint32),
        ]
        for stripe in range(int(n_stripes.max())):
            live = np.flatnonzero(n_stripes > stripe)
            full = len(live) == len(long_)
            base = pos + 16 * stripe if full else pos[live] + 16 * stripe
            for lane in range(4):
                v = acc[lane] if full else acc[lane][live]
                v = _rotl(v + w32[base + 4 * lane] * _P2, 13) * _P1
                if full:
                    acc[lane] = v
                else:
                    acc[lane][live] = v
        h[long_] = _rotl(acc[0], 1) + _rotl(acc[1], 7) + _rotl(acc[2], 12) + _rotl(acc[3], 18)
    h += lengths.astype(np.uint32)
    pos = offsets + 16 * stripes
    rest = lengths - 16 * stripes
    for i in range(3):  # at most three 4-byte words after the stripes
        on = rest >= 4 * (i + 1)
        step = _rotl(h + w32[pos + 4 * i] * _P3, 17) * _P4
        h = np.where(on, step, h)
    pos = pos + 4 * (rest // 4)
    for i in range(3):  # then at most three single bytes
        on = rest % 4 > i
        step = _rotl(h + bytes_[pos + i] * _P5, 11) * _P1
        h = np.where(on, step, h)
    h ^= h >> np.uint32(15)
    h *= _P2
    h ^= h >> np.uint32(13)
    h *= _P3
    h ^= h >> np.uint32(16)
    return h


class _SeparatorClass(dict):
    """Code point → whether it separates words: Unicode punctuation (P*), symbols (S*) or
    whitespace (what str.split() splits on). Filled on first sight of each code point."""

    def __missing__(self, cp: int) -> bool:
        ch = chr(cp)
        value = ch.isspace() or unicodedata.category(ch)[0] in "PS"
        self[cp] = value
        return value


_SEPARATOR = _SeparatorClass()
_ASCII_SEPARATOR = np.array([_SEPARATOR[c] for c in range(128)], dtype=bool)


def _normalised_batch(texts: Sequence[str]) -> tuple[str, int]:
    """NFKC + casefold of the texts joined by NUL, and how many NULs the result holds.

    One call each for the whole batch: NUL is a starter that composes with nothing, so the
    normalisation of the joined string is the join of the texts' normalisations. A text that
    itself contains NUL makes the caller fall back to text by text (the count says so)."""
    joined = "\x00".join(texts)
    return unicodedata.normalize("NFKC", joined).casefold(), joined.count("\x00")


def _separated_utf8(normalised: str) -> np.ndarray:
    """The normalised batch as UTF-8 bytes with every separator code point replaced by a space."""
    cps = np.frombuffer(normalised.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
    sep = np.zeros(len(cps), dtype=bool)
    ascii_ = cps < 128
    sep[ascii_] = _ASCII_SEPARATOR[cps[ascii_]]
    other = np.flatnonzero(~ascii_)
    if len(other):
        uniq, inv = np.unique(cps[other], return_inverse=True)
        sep[other] = np.array([_SEPARATOR[int(c)] for c in uniq], dtype=bool)[inv]
    cps[sep] = _SPACE
    text = cps.tobytes().decode("utf-32-le", "surrogatepass")
    return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)


def shingle_spans(texts: Sequence[str], shingle_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The UTF-8 word shingles of `texts` as byte spans of one buffer.

    Returns (buffer, span offsets, span lengths, shingles per text); a text's shingles are
    consecutive. Texts without any word get no span here (count 0): their one shingle is
    the normalised text itself, which `shingle_hashes` hashes apart.
    """
    n = len(texts)
    normalised, nuls = _normalised_batch(texts)
    if nuls != n - 1:
        raise ValueError("texts must not contain NUL (shingle_hashes hashes those one by one)")
    raw = np.concatenate([_separated_utf8(normalised), np.zeros(1, dtype=np.uint8)])
    # Words: maximal runs of bytes that are neither a space nor a text end.
    in_word = (raw != _SPACE) & (raw != _TEXT_END)
    edges = np.diff(in_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    text_of_word = np.searchsorted(np.flatnonzero(raw == _TEXT_END), starts)
    words_per_text = np.bincount(text_of_word, minlength=n)
    # Compact: each word followed by one space, so a run of words is one contiguous span.
    wlen = ends - starts
    new_start = np.concatenate([[0], np.cumsum(wlen + 1)[:-1]])
    gather = np.repeat(starts - new_start, wlen + 1) + np.arange(int((wlen + 1).sum()))
    buf = raw[np.minimum(gather, len(raw) - 1)]
    buf[new_start + wlen] = _SPACE
    # Shingles: words j .. j+k-1 of one text, or all of a text's words when it has at most k.
    k = shingle_size
    counts = np.where(words_per_text > k, words_per_text - k + 1, np.minimum(words_per_text, 1))
    first_word = np.concatenate([[0], np.cumsum(words_per_text)[:-1]])
    text_of_shingle = np.repeat(np.arange(n), counts)
    rank = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    head = first_word[text_of_shingle] + rank
    span_words = np.minimum(words_per_text[text_of_shingle], k)
    tail = head + span_words - 1
    offsets = new_start[head] if len(head) else np.zeros(0, dtype=np.int64)
    lengths = new_start[tail] + wlen[tail] - offsets if len(head) else np.zeros(0, dtype=np.int64)
    return buf, offsets, lengths, counts


def shingle_hashes(texts: Sequence[str], shingle_size: int, hash_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xxh32 (with `hash_seed`) of the UTF-8 bytes of each text's `text.shingles`, flattened.

    Returns (uint32 hashes of all texts back to back, int64 number of hashes per text).
    """
    texts = list(texts)
    with_nul = [i for i, t in enumerate(texts) if "\x00" in t]
    if with_nul:  # NUL joins the batch, so these few are hashed one by one, through xxhash
        fast = [i for i in range(len(texts)) if "\x00" not in texts[i]]
        f_hashes, f_counts = shingle_hashes([texts[i] for i in fast], shingle_size, hash_seed)
        parts: list[np.ndarray] = [np.zeros(0, dtype=np.uint32)] * len(texts)
        for i, piece in zip(fast, np.split(f_hashes, np.cumsum(f_counts)[:-1]) if fast else [], strict=True):
            parts[i] = piece
        for i in with_nul:
            parts[i] = np.array(
                [
                    xxhash.xxh32_intdigest(sh.encode("utf-8", "surrogatepass"), hash_seed)
                    for sh in shingles(texts[i], shingle_size)
                ],
                dtype=np.uint32,
            )
        return np.concatenate(parts), np.array([len(p) for p in parts], dtype=np.int64)
    if not texts:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    buf, offsets, lengths, counts = shingle_spans(texts, shingle_size)
    hashes = xxh32_spans(buf, offsets, lengths, hash_seed)
    wordless = np.flatnonzero(counts == 0)
    if not len(wordless):
        return hashes, counts.astype(np.int64)
    # Texts without words (empty, emoji only, punctuation only): the normalised text is the shingle.
    own = np.array(
        [
            xxhash.xxh32_intdigest(normalise_text(texts[i]).encode("utf-8", "surrogatepass"), hash_seed)
            for i in wordless
        ],
        dtype=np.uint32,
    )
    hashes = np.insert(hashes, np.cumsum(counts)[wordless], own)
    counts = counts.copy()
    counts[wordless] = 1
    return hashes, counts.astype(np.int64)
