"""Answers to held-out prompts from a model: local transformers (PEFT adapters included) or an
OpenAI-compatible server (vLLM serving the checkpoint or adapter).

A prompt is what TRL trains on for the week's data format (`train.examples.trl_example`):
a plain string, or chat messages rendered with the tokenizer's chat template and the
generation prompt, tokenised with TRL's own `_tokenize` as the eval set is. So an answer
continues exactly the text the model was trained to continue.

Sampling is seeded: greedy at temperature 0 (the default: what the model "believes", the
same every run), else `torch.manual_seed(seed + batch index)` before each batch. Prompts of
a batch are left-padded so one `generate` call answers them all.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer

Prompt = str | list[dict[str, str]]  # plain text, or chat messages


def _prompt_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    from trl.data_utils import _tokenize

    if isinstance(prompt, str):
        return list(_tokenize(tokenizer, prompt)["input_ids"])
    if getattr(tokenizer, "chat_template", None):
        return list(_tokenize(tokenizer, prompt, add_generation_prompt=True, tools=None)["input_ids"])
    # A judge request to a model without a chat template: its text as a plain prompt.
    return list(_tokenize(tokenizer, "\n".join(m["content"] for m in prompt))["input_ids"])


def _decoder(tokenizer: Any, join: str | None) -> Any:
    """Token ids → text. `join` is for tokenizers without a decoder (a custom word- or
    character-level vocabulary), which transformers decodes by joining tokens with spaces:
    a character-level answer "68" would come back as "6 8"."""
    if join is None:
        return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
    special = set(tokenizer.all_special_ids)
    return lambda ids: join.join(tokenizer.convert_ids_to_tokens([i for i in ids if i not in special]))


def _release(model: Any) -> None:
    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_local(
    model_ref: str | Path,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    device: str | None = None,
    dtype: Any = None,
    decode_join: str | None = None,
) -> list[str]:
    """One answer per prompt from a hub name, model folder or pipeline checkpoint (LoRA included)."""
    import torch

    if not prompts:
        return []
    tokenizer = load_tokenizer(model_ref)
    model = load_causal_lm(model_ref, device=device, dtype=dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    decode = _decoder(tokenizer, decode_join)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
    answers: list[str] = []
    try:
        with torch.inference_mode():
            for k, start in enumerate(range(0, len(prompts), batch_size)):
                ids = [_prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
                width = max(map(len, ids))
                input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in ids], device=model.device)
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids], device=model.device)
                if sampling:
                    torch.manual_seed(seed + k)
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=tokenizer.eos_token_id,
                    **(sampling or {"do_sample": False}),
                )
                answers.extend(decode(row) for row in out[:, width:].tolist())
    finally:
        _release(model)
    return answers


def served_name(model_ref: str | Path) -> str:
    """The name a server lists a model under: a local folder's name (vLLM's `--lora-modules
    <week>=<folder>` for a weekly adapter), else the reference itself (a hub name)."""
    path = Path(model_ref)
    return path.name if path.exists() else str(model_ref)


def generate_openai(
    base_url: str,
    model: str,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    concurrency: int = 8,
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> list[str]:
    """One answer per prompt from an OpenAI-compatible server: chat messages through
    /chat/completions, plain prompts through /completions (no template applied twice)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s)
    common = {"model": model, "max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}

    def one(item: tuple[int, Prompt]) -> str:
        i, prompt = item
        if isinstance(prompt, str):
            reply = client.completions.create(prompt=prompt, seed=seed + i, **common)
            return reply.choices[0].text or ""
        chat = client.chat.completions.create(messages=prompt, seed=seed + i, **common)
        return chat.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, enumerate(prompts)))
