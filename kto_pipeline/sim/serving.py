"""Serving: sample answers from a model reference, fast and reproducibly.

`sample_answers(model_ref, prompts, temperature, seed)` answers a list of prompts with a
custom batched sampler (prefill, then a KV-cached loop of at most 4 new tokens: an answer is
at most 3 digits plus EOS). HF `generate` does the same with far more per-step overhead.

* A model reference is anything `checkpoints.load_causal_lm` takes: a plain model folder (the
  simulator's base), a pipeline checkpoint (full model, or a LoRA adapter, which is merged
  into its base once at load time: the merged model samples as fast as a plain one), or an
  already loaded `ServedModel`. Tests and quick experiments may also pass an `Answerer`,
  any callable `(prompts, temperature, seed) -> answers`.
* Common random numbers: step t of prompt i uses the uniform draw u[i, t] of a generator
  seeded with `seed`, turned into a token by inverse-CDF sampling. Two models sampled with
  the same seed and prompts therefore see identical draws, so a week-over-week difference is
  the models' difference, not sampling luck (the notes' pitfall 8).
* The app never shows an empty answer: EOS is masked at the first step (like `generate`'s
  `min_new_tokens=1`), so every record has a completion the contract accepts. A sampled
  token that is neither task text nor EOS is shown as "?", which re-tokenises to `<unk>`.
* Prompts of different lengths are left-padded with matching position ids, so a
  PII-wrapped prompt can be sampled beside bare ones.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer
from kto_pipeline.sim.runtime import torch_threads
from kto_pipeline.sim.task import TASK_CHARS, UNKNOWN_TEXT

MAX_NEW_TOKENS = 4
DEFAULT_BATCH = 1024

Answerer = Callable[[Sequence[str], float, int], list[str]]


@dataclass
class ServedModel:
    """A loaded model ready to sample (eval mode, adapters merged) and its tokenizer."""

    model: Any
    tokenizer: Any
    name: str = "model"


ModelRef = str | os.PathLike | ServedModel | Answerer

_CACHE: OrderedDict[tuple, ServedModel] = OrderedDict()
_CACHE_SIZE = 4


def _folder_signature(folder: Path) -> tuple:
    """Changes whenever the folder's files do (training renames a new folder into place)."""
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file()))


def load_served(model_ref: str | os.PathLike | ServedModel) -> ServedModel:
    """Load (or reuse from a small cache) a model reference for sampling."""
    if isinstance(model_ref, ServedModel):
        return model_ref
    folder = Path(model_ref)
    key = (str(folder.resolve()), _folder_signature(folder)) if folder.is_dir() else (str(model_ref),)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    model = load_causal_lm(model_ref)
    if hasattr(model, "merge_and_unload"):  # a LoRA checkpoint: fold the adapter in once
        model = model.merge_and_unload()
    model.eval()
    served = ServedModel(model=model, tokenizer=load_tokenizer(model_ref), name=folder.name or str(model_ref))
    _CACHE[key] = served
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return served


def _token_texts(tokenizer: Any) -> list[str | None]:
    """Display text per token id: task characters and added placeholders as themselves, EOS
    as None (stop), anything else as UNKNOWN_TEXT."""
    texts: list[str | None] = []
    added = {t.content for t in tokenizer.added_tokens_decoder.values() if not t.special}
    for tok in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        if tok == tokenizer.eos_token:
            texts.append(None)
        elif tok in TASK_CHARS or tok in added:
            texts.append(tok)
        else:
            texts.append(UNKNOWN_TEXT)
    return texts


def _encode_left_padded(tokenizer: Any, prompts: Sequence[str]):
    import torch

    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return input_ids, mask


def _pick(logits, uniforms, temperature: float):
    """Next tokens: argmax at T=0, else inverse-CDF sampling with the given uniforms."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    picked = (cdf < uniforms.unsqueeze(-1)).sum(dim=-1)
    return picked.clamp(max=logits.shape[-1] - 1)


def _sample_batch(
    served: ServedModel, prompts: Sequence[str], uniforms: np.ndarray, temperature: float, max_new_tokens: int
) -> list[list[int]]:
    import torch

    model, tokenizer = served.model, served.tokenizer
    eos = tokenizer.eos_token_id
    input_ids, mask = _encode_left_padded(tokenizer, prompts)
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    u = torch.from_numpy(uniforms)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1, :].float()
    logits[:, eos] = float("-inf")  # never an empty answer
    next_pos = positions[:, -1:] + 1
    generated = []
    for step in range(max_new_tokens):
        tokens = _pick(logits, u[:, step], temperature)
        generated.append(tokens)
        if step + 1 == max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones_like(tokens).unsqueeze(-1)], dim=-1)
        out = model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits = out.past_key_values, out.logits[:, -1, :].float()
        next_pos = next_pos + 1
    return torch.stack(generated, dim=-1).tolist()


def _decode(ids: list[int], texts: list[str | None]) -> str:
    chars = []
    for i in ids:
        text = texts[i]
        if text is None:
            break
        chars.append(text)
    return "".join(chars)


def sample_answers(
    model_ref: ModelRef,
    prompts: Sequence[str],
    temperature: float = 1.0,
    seed: int = 0,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH,
    threads: int | None = 1,
) -> list[str]:
    """One answer per prompt (the text before EOS; never empty), deterministic for a seed.

    `temperature` 0 is greedy. The draws depend on (seed, position in `prompts`, step) only,
    so the same call on another model uses the same random numbers.
    """
    import torch

    prompts = list(prompts)
    if not prompts:
        return []
    if callable(model_ref) and not isinstance(model_ref, ServedModel):
        return list(model_ref(prompts, temperature, seed))
    served = load_served(model_ref)
    texts = _token_texts(served.tokenizer)
    uniforms = np.random.default_rng(seed).random((len(prompts), max_new_tokens))
    answers: list[str] = []
    with torch.inference_mode(), torch_threads(threads):
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            rows = _sample_batch(served, chunk, uniforms[start : start + len(chunk)], temperature, max_new_tokens)
            answers.extend(_decode(r, texts) for r in rows)
    return answers
