"""DEITA's two prompt templates and their rendering: a prompt over max_length has its fields
cut in the middle (head + " [...] " + tail), never the template's own text, so the tail the
score is read after stays whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Verbatim from hkust-nlp/deita src/deita/selection/scorer/llama_scorer.py: the scorers were
# fine-tuned on exactly these strings, spaces and newlines included.
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the Question. \n"
    " #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)
ELISION = " [...] "  # stands for the middle of a field cut to fit max_length


class _TokenMeasure:
    """Lengths as the scorer's tokenizer counts them (special tokens included, as the model sees it)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def count(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


class _ByteMeasure:
    """Without the scorer's tokenizer: UTF-8 bytes plus a margin for special tokens. Byte-level
    BPE and SentencePiece-with-byte-fallback tokens each cover at least one byte, so fitting
    in bytes guarantees fitting in tokens (at the price of cutting more than needed)."""

    MARGIN = 8

    def count(self, texts: list[str]) -> list[int]:
        return [len(t.encode("utf-8")) + self.MARGIN for t in texts]

    def ids(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def text(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="ignore")


def _shares(budget: int, lengths: list[int]) -> list[int]:
    """Water-filling: short fields keep their length, the rest split what is left evenly."""
    shares = [0] * len(lengths)
    left, remaining = budget, len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        shares[i] = min(lengths[i], left // remaining)
        left -= shares[i]
        remaining -= 1
    return shares


def _elide(text: str, ids: list[int], share: int, measure, marker_len: int) -> str:
    if len(ids) <= share:
        return text
    room = share - marker_len
    if room < 2:
        return measure.text(ids[:share])
    # Head and tail: a rendered chat keeps its opening and its last (answered) turn.
    head, tail = (room + 1) // 2, room // 2
    return measure.text(ids[:head]) + ELISION + measure.text(ids[-tail:])


def render_prompts(
    template: str, fields: Sequence[dict[str, str]], measure: Any, max_length: int
) -> tuple[list[str], int]:
    """Fill `template` for each dict of fields; a prompt over max_length has its fields cut
    (head + " [...] " + tail) until it fits, so the template's own text, and its tail
    "##Complexity: " / "##Quality: " where the score is read, stays whole.

    measure: None (count UTF-8 bytes) or a tokenizer. Returns (prompts, number truncated).
    """
    measure = _ByteMeasure() if measure is None else _TokenMeasure(measure)
    texts = [template.format(**f) for f in fields]
    if not texts:
        return texts, 0
    lengths = measure.count(texts)
    over = [i for i, n in enumerate(lengths) if n > max_length]
    if over:
        names = list(fields[0])
        overhead = measure.count([template.format(**{k: "" for k in names})])[0]
        marker_len = len(measure.ids(ELISION))
        for i in over:
            texts[i] = _fit(template, fields[i], measure, max_length, overhead, marker_len)
    return texts, len(over)


def _fit(template: str, values: dict[str, str], measure, max_length: int, overhead: int, marker_len: int) -> str:
    names = list(values)
    ids = {k: measure.ids(values[k]) for k in names}
    budget = max_length - overhead
    # Tokens can merge across the cut points, so re-measure and shrink until it fits.
    for _ in range(16):
        if budget < len(names):
            break
        shares = _shares(budget, [len(ids[k]) for k in names])
        text = template.format(**{k: _elide(values[k], ids[k], s, measure, marker_len) for k, s in zip(names, shares)})
        excess = measure.count([text])[0] - max_length
        if excess <= 0:
            return text
        budget -= excess
    raise ValueError(f"max_length {max_length} is too small for the scorer template ({overhead} tokens empty)")
