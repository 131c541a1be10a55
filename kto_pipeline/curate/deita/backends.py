"""Score backends: rendered prompts → DEITA scores. `TransformersScoreBackend` runs a causal LM
locally (batched prefill, left padding); `OpenAIScoreBackend` asks an OpenAI-compatible server
(vLLM serving the scorer) for one token's top-K logprobs."""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kto_pipeline.curate.deita.digits import FALLBACK_SCORE, digit_logprobs, digit_token_ids, expected_score
from kto_pipeline.curate.deita.prompts import render_prompts


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
