"""The vectorised shingling, xxh32 and MinHash give datasketch's signatures bit for bit."""

from __future__ import annotations

import functools
import gc
import random

import numpy as np
import pytest
import xxhash
from datasketch import MinHash

from kto_pipeline.curate.dedup import DedupConfig, DedupHistory, minhash_signatures, row_signatures, shingles
from kto_pipeline.curate.dedup.minhash import near_duplicates
from kto_pipeline.curate.dedup.shingle_hash import shingle_hashes, xxh32_spans
from kto_pipeline.curate.dedup.sketch import TEXTS_PER_BLOCK

# Texts that exercise every branch: no words, one word, fewer words than a shingle, NFKC
# compatibility forms, case folding that changes length, combining marks at either end of a
# text (the batch is normalised joined), scripts without spaces, emoji sequences, whitespace
# that only str.split() knows, NUL inside a text, a lone surrogate, and very long words.
EDGE_TEXTS = [
    "",
    "   ",
    "...!!!",
    "👍",
    "👍 👎",
    "yes",
    "OK, thanks!",
    "Ｆｕｌｌ　width ß straße ﬁne",
    "e\u0301 ends with a combining mark e\u0301",
    "\u0301starts with a combining mark and has more words",
    "ǅ title-case Σίσυφος ΣΑΣ İstanbul",
    "tabs\tand\nnewlines\x1cfile sep\x1funit sep\u2028line\u00a0nbsp\u3000ideographic",
    "a,b;c.d!e?f g-h_i (j) [k] {l} \"m\" 'n' 1/2 $3 €4 5%",
    "한국어 텍스트 입니다 ᄀ ᅡ 조합 日本語のテキストです",
    "emoji 👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷 inside a👍b words",
    "nul\x00inside a text with enough words to shingle",
    "\ud800 a lone surrogate among words here",
    "x" * 301,
    " ".join(f"word{i}" for i in range(60)),
]


def _random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ["alpha", "Beta", "GAMMA", "δέλτα", "ñandú", "ü", "—", "1234", "e-mail@x.com", "naïve", "日本", "🙂", "ﬀ"]
    out = []
    for _ in range(count):
        words = [
            rng.choice(vocab) if rng.random() < 0.8 else "y" * rng.randrange(1, 45) for _ in range(rng.randrange(80))
        ]
        out.append(rng.choice([" ", "  ", ", ", "\n"]).join(words))
    return out


def _datasketch(text: str, num_perm: int, seed: int, hash_seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=functools.partial(xxhash.xxh32_intdigest, seed=hash_seed))
    assert m.scheme == "affine32"
    m.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles(text, 5)])
    return m.hashvalues


@pytest.mark.parametrize("seed", [0, 1, 2, 0xFFFFFFFF])
def test_xxh32_of_spans_equals_xxhash_for_every_length(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(1200))
    lengths = np.array(list(range(130)) + [rng.randrange(0, 400) for _ in range(400)])
    offsets = np.array([rng.randrange(0, len(data) - int(n)) for n in lengths])
    got = xxh32_spans(np.frombuffer(data, dtype=np.uint8), offsets, lengths, seed)
    assert got.dtype == np.uint32
    assert got.tolist() == [xxhash.xxh32_intdigest(data[o : o + n], seed) for o, n in zip(offsets, lengths)]


def test_shingle_hashes_equal_xxhash_of_each_shingle():
    texts = EDGE_TEXTS + _random_texts(200, seed=3)
    flat, counts = shingle_hashes(texts, 5, hash_seed=2)
    ends = np.cumsum(counts)
    for i, text in enumerate(texts):
        expected = [xxhash.xxh32_intdigest(s.encode("utf-8", "surrogatepass"), 2) for s in shingles(text, 5)]
        assert flat[ends[i] - counts[i] : ends[i]].tolist() == expected, repr(text[:40])


@pytest.mark.parametrize(("num_perm", "seed", "hash_seed"), [(128, 1, 1), (128, 1, 2), (64, 7, 0)])
def test_signatures_equal_datasketch_minhash_on_varied_texts(num_perm, seed, hash_seed):
    # More texts than one block, so blocks run on threads and meet at their boundaries.
    texts = EDGE_TEXTS + _random_texts(TEXTS_PER_BLOCK + 300, seed=seed)
    ours = minhash_signatures(texts, num_perm=num_perm, seed=seed, shingle_size=5, hash_seed=hash_seed)
    assert ours.dtype == np.uint32 and ours.shape == (len(texts), num_perm)
    picks = list(range(len(EDGE_TEXTS))) + list(range(len(EDGE_TEXTS), len(texts), 37)) + [len(texts) - 1]
    for i in picks:
        assert np.array_equal(ours[i], _datasketch(texts[i], num_perm, seed, hash_seed)), repr(texts[i][:40])


def test_row_signature_is_datasketch_union_of_prompt_and_completion():
    prompts, completions = EDGE_TEXTS, list(reversed(EDGE_TEXTS))
    p, c = row_signatures(prompts, completions)
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        mp = MinHash(num_perm=128, seed=1, hashfunc=functools.partial(xxhash.xxh32_intdigest, seed=1))
        mp.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles(prompt, 5)])
        mc = MinHash(num_perm=128, seed=1, hashfunc=functools.partial(xxhash.xxh32_intdigest, seed=2))
        mc.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles(completion, 5)])
        assert np.array_equal(MinHash.union(mp, mc).hashvalues, np.minimum(p[i], c[i]))


def test_signatures_of_no_texts_are_empty():
    assert minhash_signatures([]).shape == (0, 128)


def test_near_duplicates_restore_the_garbage_collector_state():
    texts = _random_texts(50, seed=5)
    p, c = row_signatures(texts, texts)
    config = DedupConfig()
    args = (p, c, np.zeros(50, bool), np.arange(50), np.array([str(i) for i in range(50)], dtype=object))
    history = DedupHistory.empty(config.num_perm, 0)
    assert gc.isenabled()
    near_duplicates(*args, history, config, np.ones(50, bool))
    assert gc.isenabled()
    gc.disable()
    try:
        near_duplicates(*args, history, config, np.ones(50, bool))
        assert not gc.isenabled()
    finally:
        gc.enable()
