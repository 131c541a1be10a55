"""DEITA scoring (complexity × quality) and DEITA's diversity-aware selection, as a plain library.

DEITA (Liu et al. 2023, hkust-nlp/deita) scores a sample with two fine-tuned causal LMs: a
complexity scorer reads the instruction, a quality scorer reads instruction + response. Each
is prompted with a fixed template and the score is the expectation Σ pᵢ·i, i = 1..6, where p is
the softmax over the next-token logits of the digits "1".."6" at the end of the prompt (one
prefill, no generation). The evol score is complexity × quality.

Two backends compute a score for a list of prompts:
- `TransformersScoreBackend`: any causal LM by hub name or local path, batched prefill with left
  padding, for CPU runs, tests and small GPU jobs.
- `OpenAIScoreBackend`: an OpenAI-compatible completions server (vLLM serving the scorer) asked
  for one token with top-K logprobs, so a GPU box can score millions of rows.

`DeitaScorer` renders the templates (truncating long fields inside the template, so the tail
the score is read after stays intact), scores each distinct prompt and each distinct
(prompt, completion) once, and returns complexity, quality and evol_score per row.

`select_diverse` is DEITA's "repr filter": rows in descending evol score, a row kept only if its
cosine to every already-kept row is ≤ threshold, up to a row budget. Here it runs per label
class (a thumbs-down row's low quality is its label, not a flaw), splits the budget across the
classes in proportion to their candidates, applies the score floor to desirable rows only, and
gives every dropped row a reason.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------
# Templates and the score
# ---------------------------------------------------------------------------------------

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
SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")
FALLBACK_SCORE = 3.0  # DEITA's score when the digits cannot be read
ELISION = " [...] "  # stands for the middle of a field cut to fit max_length

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


# ---------------------------------------------------------------------------------------
# Rendering with truncation inside the fields
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------


class ScoreBackend(ABC):
    """Scores rendered prompts. `stats` counts prompts, batches, truncations and fallbacks."""

    name: str = "score-backend"
    max_length: int = 2048

    def __init__(self) -> None:
        self.stats: dict[str, int] = {"prompts": 0, "batches": 0, "truncated": 0, "fallbacks": 0}
        self._stats_lock = threading.Lock()

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for k, v in deltas.items():
                self.stats[k] = self.stats.get(k, 0) + int(v)

    def measure_tokenizer(self):
        """The tokenizer lengths are measured with for truncation; None: UTF-8 bytes."""
        return None

    def prepare(self, template: str, fields: Sequence[dict[str, str]]) -> list[str]:
        prompts, truncated = render_prompts(template, fields, self.measure_tokenizer(), self.max_length)
        self._count(truncated=truncated)
        return prompts

    @abstractmethod
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """Prompts → float64 scores in [1, 6], in input order."""


def _resolve_dtype(dtype: Any, device: str):
    import torch

    if dtype is None:
        # 13B scorers do not fit a GPU in float32; CPUs are slow in half precision.
        return torch.float32 if device == "cpu" else torch.bfloat16
    if isinstance(dtype, str) and dtype != "auto":
        return getattr(torch, dtype)
    return dtype


class TransformersScoreBackend(ScoreBackend):
    """A causal LM (hub name, local folder or pipeline checkpoint) scoring locally.

    Prompts are tokenized once, sorted by length (longest first, so the batch sizes that hit
    memory limits come first) and run in batches with left padding, an attention mask and
    mask-derived position ids, so the last position is each prompt's own last token and a
    score does not depend on its batch. Only the last position's logits are computed.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 8,
        max_length: int = 2048,
        merge_variants: bool = False,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.model_ref = str(model)
        self.name = self.model_ref
        self._device = device
        self._dtype = dtype
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.merge_variants = merge_variants
        self._tokenizer = None
        self._model = None
        self._digits: list[list[int]] | None = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from kto_pipeline.models.checkpoints import load_tokenizer

            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.model_ref)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            from kto_pipeline.models.checkpoints import load_causal_lm

            with self._lock:
                if self._model is None:
                    dtype = _resolve_dtype(self._dtype, self.device)
                    self._model = load_causal_lm(self.model_ref, device=self.device, dtype=dtype)
        return self._model

    @property
    def digit_ids(self) -> list[list[int]]:
        if self._digits is None:
            self._digits = digit_token_ids(self.tokenizer, self.model_ref, self.merge_variants)
        return self._digits

    def measure_tokenizer(self):
        return self.tokenizer

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        import inspect

        import torch

        prompts = list(prompts)
        out = np.empty(len(prompts), dtype=np.float64)
        if not prompts:
            return out
        tok, model, digits = self.tokenizer, self.model, self.digit_ids
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        encoded = tok(prompts, add_special_tokens=True)["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
        flat = torch.tensor([t for group in digits for t in group])
        groups = np.repeat(np.arange(6), [len(g) for g in digits])
        # Only the last position's logits: a full (batch, length, vocab) tensor is gigabytes on a GPU.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel takes **kwargs
        extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
        device = next(model.parameters()).device
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    seq = encoded[i]
                    ids[r, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                    mask[r, width - len(seq) :] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    use_cache=False,
                    **extra,
                ).logits[:, -1, :]
                chosen = logits[:, flat.to(logits.device)].float().cpu().numpy().astype(np.float64)
                if len(flat) == 6:
                    digit_logits = chosen
                else:  # several tokens per digit: their probability mass adds up
                    digit_logits = np.stack(
                        [np.logaddexp.reduce(chosen[:, groups == g], axis=1) for g in range(6)], axis=1
                    )
                out[idx] = expected_score(digit_logits)
        self._count(prompts=len(prompts), batches=math.ceil(len(prompts) / self.batch_size))
        return out

    def __repr__(self) -> str:
        return f"TransformersScoreBackend({self.model_ref!r}, device={self._device!r}, batch_size={self.batch_size})"


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


class OpenAIScoreBackend(ScoreBackend):
    """Scores through an OpenAI-compatible /v1/completions server (vLLM serving the scorer).

    Each batch is one request for one token at temperature 0 with the top `logprobs` logprobs
    of that token; the digits among them are renormalised (the softmax over the six is the
    same whether it starts from logits or logprobs). If no digit is among the top K the score
    is DEITA's fallback 3.0 and `stats["fallbacks"]` counts it. vLLM caps K at its
    --max-logprobs (20 by default).

    tokenizer: the scorer's tokenizer (name, path or object) used to truncate prompts to
        max_length tokens; strongly recommended, since vLLM rejects a prompt longer than its
        context and that fails the whole request. None: lengths are measured in UTF-8 bytes,
        which always fits but cuts more.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        batch_size: int = 64,
        concurrency: int = 4,
        logprobs: int = 20,
        max_length: int = 2048,
        tokenizer: Any = None,
        merge_variants: bool = False,
    ):
        super().__init__()
        if batch_size < 1 or concurrency < 1 or logprobs < 1 or max_length < 1:
            raise ValueError("batch_size, concurrency, logprobs and max_length must be >= 1")
        self.model = model
        self.name = f"{model}@{base_url}"
        self.base_url = base_url
        self.api_key = api_key or "EMPTY"  # vLLM accepts any key unless started with --api-key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.batch_size = int(batch_size)
        self.concurrency = int(concurrency)
        self.logprobs = int(logprobs)
        self.max_length = int(max_length)
        self.merge_variants = merge_variants
        self._tokenizer_ref = tokenizer
        self._tokenizer = None
        self._client = None
        self._lock = threading.Lock()

    def measure_tokenizer(self):
        if self._tokenizer is None and self._tokenizer_ref is not None:
            if isinstance(self._tokenizer_ref, (str, Path)):
                from kto_pipeline.models.checkpoints import load_tokenizer

                self._tokenizer = load_tokenizer(self._tokenizer_ref)
            else:
                self._tokenizer = self._tokenizer_ref
        return self._tokenizer

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from openai import OpenAI

                    self._client = OpenAI(
                        base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries
                    )
        return self._client

    def _score_batch(self, prompts: list[str]) -> tuple[np.ndarray, int]:
        response = self.client.completions.create(
            model=self.model, prompt=prompts, max_tokens=1, temperature=0, logprobs=self.logprobs
        )
        scores = np.full(len(prompts), FALLBACK_SCORE)
        seen = np.zeros(len(prompts), dtype=bool)
        for choice in response.choices:
            top = choice.logprobs.top_logprobs if choice.logprobs is not None else None
            masses = digit_logprobs(top[0] if top else None, self.merge_variants)
            if np.isfinite(masses).any():
                scores[choice.index] = expected_score(masses[None, :])[0]
                seen[choice.index] = True
        return scores, int((~seen).sum())

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        batches = [prompts[s : s + self.batch_size] for s in range(0, len(prompts), self.batch_size)]
        if not batches:
            return np.empty(0, dtype=np.float64)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
            results = list(pool.map(self._score_batch, batches))
        self._count(prompts=len(prompts), batches=len(batches), fallbacks=sum(f for _, f in results))
        return np.concatenate([s for s, _ in results])

    def __repr__(self) -> str:
        return f"OpenAIScoreBackend({self.model!r}, base_url={self.base_url!r}, batch_size={self.batch_size})"


# ---------------------------------------------------------------------------------------
# Scoring rows
# ---------------------------------------------------------------------------------------

SCORE_COLUMNS = ("complexity", "quality", "evol_score")


def _unique(keys: list[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    first: dict[Hashable, int] = {}
    inverse = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        inverse[i] = first.setdefault(key, len(first))
    return list(first), inverse


@dataclass
class ScoreResult:
    """scores: row_id (when the rows have one), complexity, quality, evol_score (float64),
    positionally aligned with the input rows. info: counts and backends, for run metadata."""

    scores: pd.DataFrame
    info: dict = field(default_factory=dict)


class DeitaScorer:
    """Complexity and quality backends → per-row DEITA scores.

    A row is scored as one turn: instruction = `prompt` (chat prompts are already a text
    rendering), output = `completion`. Each distinct prompt is scored for complexity once and
    each distinct (prompt, completion) for quality once.
    """

    def __init__(self, complexity: ScoreBackend, quality: ScoreBackend):
        self.complexity = complexity
        self.quality = quality

    def score(self, rows: pd.DataFrame) -> ScoreResult:
        missing = [c for c in ("prompt", "completion") if c not in rows.columns]
        if missing:
            raise ValueError(f"rows lack columns {missing}")
        prompts = [str(p) for p in rows["prompt"].tolist()]
        completions = [str(c) for c in rows["completion"].tolist()]
        uniq_prompts, inv_p = _unique(prompts)
        uniq_pairs, inv_pc = _unique(list(zip(prompts, completions)))

        def run(backend: ScoreBackend, template: str, fields: list[dict[str, str]]) -> tuple[np.ndarray, dict]:
            # Per-call deltas of the backend's counters: the two backends may be one object.
            before = dict(backend.stats)
            values = np.asarray(backend.score(backend.prepare(template, fields)), dtype=np.float64)
            if values.shape != (len(fields),):
                raise ValueError(f"{backend.name} returned {values.shape} scores for {len(fields)} prompts")
            return values, {k: v - before.get(k, 0) for k, v in backend.stats.items()}

        cx_unique, cx_stats = run(self.complexity, COMPLEXITY_TEMPLATE, [{"instruction": p} for p in uniq_prompts])
        q_unique, q_stats = run(
            self.quality, QUALITY_TEMPLATE, [{"instruction": p, "output": c} for p, c in uniq_pairs]
        )
        complexity, quality = cx_unique[inv_p], q_unique[inv_pc]

        frame = pd.DataFrame(
            {"complexity": complexity, "quality": quality, "evol_score": complexity * quality}
        )
        if "row_id" in rows.columns:
            frame.insert(0, "row_id", pd.Series(rows["row_id"].to_numpy(), dtype="str"))

        info = {
            "rows": len(rows),
            "unique_prompts": len(uniq_prompts),
            "unique_pairs": len(uniq_pairs),
            "complexity_backend": self.complexity.name,
            "quality_backend": self.quality.name,
            "complexity_stats": cx_stats,
            "quality_stats": q_stats,
        }
        return ScoreResult(scores=frame, info=info)


# ---------------------------------------------------------------------------------------
# Diversity-aware selection (DEITA's repr filter)
# ---------------------------------------------------------------------------------------


class SelectionReason:
    """Drop reasons. Stable strings: dashboards and tests key on them."""

    BELOW_SCORE_FLOOR = "below_score_floor"
    DIVERSITY = "diversity"
    OVER_BUDGET = "over_budget"
    ALL = (BELOW_SCORE_FLOOR, DIVERSITY, OVER_BUDGET)


@dataclass(frozen=True)
class SelectionConfig:
    """Parameters of `select_diverse`.

    threshold: a row is kept only if its cosine to every kept row (of its class) is <= this.
    budget: the most rows to keep in all; None: no cap. Split across the label classes in
        proportion to their candidates (rows left after the floor), largest remainder first.
    score_floor: desirable rows with evol_score below it are dropped first; None: no floor.
        Ignored when the rows are unscored.
    per_label: run the pass per label class (True) or over all rows at once.
    block_size: candidates compared against the kept set per matrix product.
    """

    threshold: float = 0.9
    budget: int | None = None
    score_floor: float | None = None
    per_label: bool = True
    block_size: int = 1024

    def __post_init__(self):
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [-1, 1], got {self.threshold}")
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        if self.score_floor is not None and not math.isfinite(self.score_floor):
            raise ValueError(f"score_floor must be finite, got {self.score_floor}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


@dataclass
class SelectionResult:
    """kept: kept rows in input order, fresh RangeIndex, plus complexity, quality, evol_score.
    dropped: the other rows, input order, the same columns plus reason, detail, similar_to (the
        row_id of the kept row a "diversity" row was too similar to: the most similar one kept
        before it) and similarity (that cosine; NaN for other reasons).
    kept_index: positions of the kept rows in the input (to slice the embeddings).
    counts: rows_in, kept and one count per reason (zeros included).
    info: parameters used, the order, per-class quotas and counts.
    """

    kept: pd.DataFrame
    dropped: pd.DataFrame
    kept_index: np.ndarray
    counts: dict[str, int]
    info: dict = field(default_factory=dict)


_KEPT, _DIVERSITY, _OVER_BUDGET = 0, 1, 2
_SIM_CHUNK = 8192  # kept rows per product: bounds memory at block_size × 8192 floats


def greedy_diverse(
    x: np.ndarray, threshold: float, cap: int | None = None, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DEITA's greedy pass over unit rows `x`, already in priority order.

    Row i is kept iff max cosine to the rows kept before it is <= threshold, until `cap` rows
    are kept; later rows are over budget. Candidates are taken a block at a time: one product
    against the kept set so far, one Gram matrix inside the block, and a cheap in-block sweep
    that updates the later rows' best match whenever a row is kept. Work is O(n·k·d).

    Returns status (0 kept, 1 diversity, 2 over budget), match (index of the most similar
    earlier kept row, -1 if none) and its cosine (NaN unless status is 1).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    cap = m if cap is None else min(int(cap), m)
    status = np.full(m, _OVER_BUDGET, dtype=np.int8)
    match = np.full(m, -1, dtype=np.int64)
    sim_out = np.full(m, np.nan, dtype=np.float64)
    kept_vecs = np.empty((cap, d), dtype=np.float32)
    kept_pos = np.empty(cap, dtype=np.int64)
    k = 0
    s = 0
    while s < m and k < cap:
        e = min(s + block_size, m)
        xb = x[s:e]
        best = np.full(e - s, -np.inf, dtype=np.float32)
        arg = np.full(e - s, -1, dtype=np.int64)
        for t in range(0, k, _SIM_CHUNK):
            u = min(t + _SIM_CHUNK, k)
            sim = xb @ kept_vecs[t:u].T
            j = np.argmax(sim, axis=1)
            v = sim[np.arange(e - s), j]
            better = v > best
            best = np.where(better, v, best)
            arg = np.where(better, kept_pos[t + j], arg)
        gram = xb @ xb.T
        for i in range(e - s):
            if k == cap:
                break
            if best[i] > threshold:
                status[s + i] = _DIVERSITY
                match[s + i] = arg[i]
                sim_out[s + i] = float(best[i])
                continue
            status[s + i] = _KEPT
            kept_vecs[k] = xb[i]
            kept_pos[k] = s + i
            k += 1
            g = gram[i, i + 1 :]
            better = g > best[i + 1 :]
            best[i + 1 :] = np.where(better, g, best[i + 1 :])
            arg[i + 1 :] = np.where(better, s + i, arg[i + 1 :])
        s = e
    return status, match, sim_out


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights`; leftover units go to the largest fractional
    parts, ties to the earlier weight. Never gives a part more than its weight."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    total = min(total, whole)
    exact = [total * w / whole for w in weights]
    parts = [math.floor(q) for q in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _score_frame(rows: pd.DataFrame, scores: Any) -> pd.DataFrame:
    n = len(rows)
    if scores is None:
        source = rows if "evol_score" in rows.columns else None
    elif isinstance(scores, pd.DataFrame):
        if "evol_score" not in scores.columns:
            raise ValueError("a scores frame needs an evol_score column")
        source = scores
    else:
        source = pd.DataFrame({"evol_score": np.asarray(scores, dtype=np.float64).reshape(-1)})
    out = pd.DataFrame({c: np.full(n, np.nan) for c in SCORE_COLUMNS})
    if source is None:
        return out
    if len(source) != n:
        raise ValueError(f"scores have {len(source)} rows, rows have {n}")
    if source is not rows and "row_id" in source.columns and "row_id" in rows.columns:
        if not np.array_equal(source["row_id"].astype(str).to_numpy(), rows["row_id"].astype(str).to_numpy()):
            raise ValueError("scores are not aligned with rows (row_id differs)")
    for c in SCORE_COLUMNS:
        if c in source.columns:
            out[c] = pd.to_numeric(source[c], errors="raise").to_numpy(dtype=np.float64)
    return out


def select_diverse(
    rows: pd.DataFrame,
    scores: pd.DataFrame | Sequence[float] | np.ndarray | None,
    embeddings: np.ndarray,
    config: SelectionConfig | None = None,
) -> SelectionResult:
    """DEITA's diversity-aware selection, per label class (see `SelectionConfig`).

    rows: a frame with row_id (unique) and label (bool); every column is carried through.
    scores: a frame aligned with rows with evol_score (and complexity, quality), e.g.
        `DeitaScorer.score(rows).scores`; or an array of evol scores; or None, which takes
        rows["evol_score"] when present and otherwise means unscored. Unscored (all NaN) rows
        are visited in row_id order and no floor applies; scored rows by evol_score
        descending, ties by row_id. Partly missing scores are an error.
    embeddings: (len(rows), dim) L2-normalised float32 vectors aligned with rows.
    """
    config = config or SelectionConfig()
    for c in ("row_id", "label"):
        if c not in rows.columns:
            raise ValueError(f"rows lack column {c!r}")
    n = len(rows)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, dim), got {emb.shape}")
    if n and not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    row_ids = rows["row_id"].astype(str).to_numpy(dtype=object)
    if len(set(row_ids)) != n:
        raise ValueError("row_id must be unique")
    if rows["label"].isna().any():
        raise ValueError("label has missing values")
    labels = rows["label"].to_numpy(dtype=bool)

    score_cols = _score_frame(rows, scores)
    evol = score_cols["evol_score"].to_numpy(dtype=np.float64)
    nan = np.isnan(evol)
    scored = bool(n) and not nan.all()
    if scored and nan.any():
        raise ValueError(f"{int(nan.sum())} of {n} rows have no evol_score; score all rows or none")

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    similar_to = np.full(n, None, dtype=object)
    similarity = np.full(n, np.nan, dtype=np.float64)

    if scored and config.score_floor is not None:
        floor = config.score_floor
        for i in np.flatnonzero(labels & (evol < floor)):
            reason[i] = SelectionReason.BELOW_SCORE_FLOOR
            detail[i] = f"evol_score {evol[i]:.4g} < floor {floor:.4g} (desirable rows only)"

    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(row_ids.astype(str), kind="stable")] = np.arange(n)
    # Priority: evol score descending, then row_id, so the input order never matters.
    priority = np.lexsort((id_rank, -evol)) if scored else np.argsort(id_rank, kind="stable")

    candidate = reason == None  # noqa: E711 - element-wise
    if config.per_label:
        classes = [("desirable", labels), ("undesirable", ~labels)]
    else:
        classes = [("all", np.ones(n, dtype=bool))]
    sizes = [int((mask & candidate).sum()) for _, mask in classes]
    quotas = [None] * len(classes) if config.budget is None else largest_remainder(config.budget, sizes)

    class_info: dict[str, dict] = {}
    for (name, mask), quota in zip(classes, quotas):
        order = priority[(mask & candidate)[priority]]
        status, match, sim = greedy_diverse(emb[order], config.threshold, quota, config.block_size)
        for pos in np.flatnonzero(status == _DIVERSITY):
            i, j = order[pos], order[match[pos]]
            reason[i] = SelectionReason.DIVERSITY
            similar_to[i] = row_ids[j]
            similarity[i] = sim[pos]
            detail[i] = f"cosine {sim[pos]:.4f} > {config.threshold} with kept row {row_ids[j]}"
        for pos in np.flatnonzero(status == _OVER_BUDGET):
            reason[order[pos]] = SelectionReason.OVER_BUDGET
            detail[order[pos]] = f"{name} quota of {quota} rows reached"
        class_info[name] = {
            "rows": int(mask.sum()),
            "candidates": len(order),
            "quota": quota,
            "kept": int((status == _KEPT).sum()),
            "diversity": int((status == _DIVERSITY).sum()),
            "over_budget": int((status == _OVER_BUDGET).sum()),
        }

    kept_mask = reason == None  # noqa: E711
    full = pd.concat([rows.reset_index(drop=True).drop(columns=list(SCORE_COLUMNS), errors="ignore"), score_cols], axis=1)
    kept = full.loc[kept_mask].reset_index(drop=True)
    dropped = full.loc[~kept_mask].reset_index(drop=True)
    dropped["reason"] = pd.Series(reason[~kept_mask], dtype="str")
    dropped["detail"] = pd.Series(detail[~kept_mask], dtype="str")
    dropped["similar_to"] = pd.Series(similar_to[~kept_mask], dtype="str")
    dropped["similarity"] = similarity[~kept_mask]

    counts = {"rows_in": n, "kept": int(kept_mask.sum())}
    for r in SelectionReason.ALL:
        counts[r] = int((reason == r).sum())
    assert counts["rows_in"] == counts["kept"] + sum(counts[r] for r in SelectionReason.ALL)
    info = {
        "threshold": config.threshold,
        "budget": config.budget,
        "score_floor": config.score_floor if scored else None,
        "per_label": config.per_label,
        "scored": scored,
        "order": "evol_score desc, row_id" if scored else "row_id",
        "embedding_dim": int(emb.shape[1]),
        "classes": class_info,
    }
    return SelectionResult(
        kept=kept, dropped=dropped, kept_index=np.flatnonzero(kept_mask), counts=counts, info=info
    )
