"""DEITA's score read from the next-token distribution over the digits "1".."6": the expectation
Σ pᵢ·i, from logits (local backend) or top-K logprobs (OpenAI-compatible backend), and the
digits' token ids in a scorer's vocabulary."""

from __future__ import annotations

import math

import numpy as np

SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")
FALLBACK_SCORE = 3.0  # DEITA's score when the digits cannot be read

_SCORE_VALUES = np.arange(1, 7, dtype=np.float64)


def expected_score(digit_logits: np.ndarray) -> np.ndarray:
    """(n, 6) logits (or logprobs; -inf for an absent digit) of "1".."6" → Σ softmax·i, shape (n,)."""
    z = np.asarray(digit_logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p @ _SCORE_VALUES


def digit_token_ids(tokenizer, model_name: str = "", merge_variants: bool = False) -> list[list[int]]:
    """Token ids of "1".."6": one list per digit, the bare digit token first.

    The bare token (LLaMA's 29896.. for DEITA's scorers) is looked up in the vocabulary first,
    then by encoding the digit alone. merge_variants also collects every other single token
    whose decoded text, stripped, is the digit (e.g. byte-level BPE's " 1"), so the local score
    can be defined exactly as the OpenAI backend's merged one.
    """
    vocab = tokenizer.get_vocab()
    out: list[list[int]] = []
    for d in SCORE_DIGITS:
        tid = vocab.get(d)
        if tid is None or tokenizer.decode([tid]).strip() != d:
            ids = tokenizer(d, add_special_tokens=False)["input_ids"]
            if len(ids) != 1 or tokenizer.decode(ids).strip() != d:
                pieces = tokenizer.convert_ids_to_tokens(ids)
                raise ValueError(
                    f"scorer model {model_name or type(tokenizer).__name__!r}: the score digit {d!r} is not a "
                    f"single token (encodes as {pieces}), so a DEITA score cannot be read from its logits"
                )
            tid = ids[0]
        out.append([int(tid)])
    if merge_variants:
        special = set(getattr(tokenizer, "all_special_ids", []))
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        for tid, text in enumerate(texts):
            key = text.strip()
            if key in SCORE_DIGITS and tid not in special:
                group = out[SCORE_DIGITS.index(key)]
                if tid not in group:
                    group.append(tid)
    return out


def digit_logprobs(top_logprobs: dict[str, float] | None, merge_variants: bool = False) -> np.ndarray:
    """One token's top logprobs {text: logprob} → (6,) log-masses of "1".."6" (-inf if absent).

    merge_variants: tokens whose stripped text is the digit (" 1", "1") add up (log-sum-exp);
    otherwise only the exact text "1" counts, as DEITA reads the bare digit tokens; the
    same default as the local backend, so both give the same score for the same scorer.
    """
    out = np.full(6, -np.inf)
    for text, lp in (top_logprobs or {}).items():
        key = text.strip() if merge_variants else text
        if key in SCORE_DIGITS and lp is not None and not math.isnan(lp):
            j = SCORE_DIGITS.index(key)
            out[j] = np.logaddexp(out[j], lp)
    return out
