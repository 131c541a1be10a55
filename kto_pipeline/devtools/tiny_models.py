"""Tiny causal language models built locally, for tests, the demo and CPU benchmarks.

Nothing can be fetched from a model hub on our machines, yet every step that takes a model
(the DEITA scorer, the synthetic generator, the KTO trainer) should run its real code path.
`build_tiny_causal_lm` writes a complete Hugging Face model folder: a byte-level BPE
tokenizer trained with `tokenizers` on a small corpus, with a chat template and pad/bos/eos
tokens, and a randomly initialised (seeded) `LlamaForCausalLM`. Any code that accepts
"a model name or path" loads it with `AutoTokenizer` / `AutoModelForCausalLM`.

The folder is built once: a second call with the same arguments finds the finished folder
(marked by `tiny_model.json`) and returns it untouched, so reruns are cheap and identical.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARKER = "tiny_model.json"

# The plain role-tagged template below renders "<|user|>\n...\n<|assistant|>\n" and is
# prefix-stable (prompt + completion starts with the rendered prompt), which TRL's
# KTOTrainer and transformers' text-generation pipeline both rely on.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]

DEFAULT_CORPUS = [
    "You are a helpful assistant. Please identify the complexity score of the following user query.",
    "Please identify the quality score of the Response corresponding to the Question.",
    "##Query: ##Complexity: #Question# #Response# ##Quality: 1 2 3 4 5 6",
    "How do I reset my password? Open the settings page and choose reset password.",
    "Write a short poem about the sea. The sea is wide and blue and calm at night.",
    "What is the capital of France? The capital of France is Paris.",
    "Explain how a hash map works, with an example in Python: d = {'a': 1}; d['a'] returns 1.",
    "Summarise this email for me and draft a polite reply to the customer about the refund.",
    "23+45=68 17+38=55 99+11=110 0 1 2 3 4 5 6 7 8 9",
]


@dataclass(frozen=True)
class TinyModelSpec:
    """The shape of a tiny Llama. Defaults give about 0.2M parameters: fast on one core."""

    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True
    seed: int = 0
    corpus: tuple[str, ...] = field(default_factory=lambda: tuple(DEFAULT_CORPUS))

    def fingerprint(self) -> dict:
        # JSON round trip: the marker file stores lists where the spec holds tuples.
        return json.loads(json.dumps(asdict(self) | {"format": 1}, sort_keys=True))


def build_tiny_tokenizer(spec: TinyModelSpec):
    """A byte-level BPE tokenizer (any text encodes; single digits are single tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(spec.corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def random_llama(shape: Any, tokenizer, *, seed: int, bos_token_id: int | None):
    """A seeded random LlamaForCausalLM of `shape` (any object with the Llama size fields:
    TinyModelSpec, the simulator's ModelShape) over `tokenizer`'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = bos_token_id
    return model


def build_tiny_model(spec: TinyModelSpec, tokenizer):
    return random_llama(spec, tokenizer, seed=spec.seed, bos_token_id=tokenizer.bos_token_id)


def build_tiny_causal_lm(path: str | os.PathLike, spec: TinyModelSpec | None = None) -> Path:
    """Write (once) a tokenizer + random Llama to `path` and return it.

    An existing folder built from the same spec is reused; a folder built from another spec
    or left half-written raises rather than being silently overwritten.
    """
    spec = spec or TinyModelSpec()
    path = Path(path)
    marker = path / MARKER
    if marker.exists():
        found = json.loads(marker.read_text())
        if found != spec.fingerprint():
            raise ValueError(f"{path} holds a tiny model built from another spec; remove it or pick another path")
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not a finished tiny model folder")

    tokenizer = build_tiny_tokenizer(spec)
    model = build_tiny_model(spec, tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a crash never leaves a folder that looks finished.
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps(spec.fingerprint(), indent=1, sort_keys=True))
        if path.exists():
            path.rmdir()
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
