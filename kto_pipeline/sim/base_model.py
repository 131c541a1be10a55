"""The production model: a tiny Llama trained from scratch on a scenario's corrupted corpus.

`build_base_model(scenario, cache_dir)` writes a normal Hugging Face model folder (config,
safetensors, the character tokenizer) that `checkpoints.load_causal_lm` / `load_tokenizer`
and TRL load like any other, plus `simulator_base.json` (the scenario fingerprint and the
build's figures). The folder name carries a hash of the scenario, its seeds and
`CODE_VERSION`, so a second call finds the finished folder and returns it without training;
a changed scenario gets a new folder. It is built in a staging folder and renamed into place,
so a crash never leaves a folder that looks finished, and two processes racing to build the
same base both end with the one that won the rename.

Pretraining (the notes' recipe): AdamW lr 2e-3, batch 256, 20 warmup steps then cosine
decay, gradient clipping at 1, cross-entropy on the answer and EOS only (the prompt is
context, not a target), single-threaded (faster than two threads on a shared 2-core box).
Each step draws a fresh batch of prompts (all 8,100: the production model knows the whole
domain, wrongly) and fresh corrupted answers from a generator seeded by the scenario, so a
build is deterministic on a given machine.

**1,500 steps, not the notes' 1,000.** Learning the sum is a phase transition: the loss sits
near 1.04 until step ~650, then falls towards the corpus's floor (~0.62 per token). At 1,000
steps the carry_bug base reached only 0.20 at T=1 (without gradient clipping there was no
transition at all by step 1,000); at 1,500 it reaches 0.35 at T=1, 0.58 greedy and 0.04
greedy on carry prompts, close to the notes' base. ~0.15 s/step on an idle core (~4 min);
5–7 min measured on the busy shared machine. The transition's timing depends on the seed,
so `simulator_base.json` records each new base's held-out figures ("heldout"): look at them
after building with another seed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kto_pipeline.devtools.tiny_models import random_llama
from kto_pipeline.sim.measure import evaluate_model
from kto_pipeline.sim.runtime import torch_threads
from kto_pipeline.sim.scenarios import Scenario, corrupted_answer, get_scenario
from kto_pipeline.sim.serving import ServedModel
from kto_pipeline.sim.task import ALL_PROMPTS, build_tokenizer

MARKER = "simulator_base.json"
IGNORE_INDEX = -100

ProgressCallback = Callable[[int, float], None]  # (step, loss)


# Base models built by `build_base_model` and shipped with the package (about 2 MB each), so
# the main job does not spend minutes pretraining on a fresh machine. A folder is used only
# when its fingerprint matches the scenario's; otherwise the base is built into the cache.
BUNDLED_BASES = Path(__file__).parent / "bases"


def bundled_base(scenario: Scenario | str) -> Path | None:
    scenario = get_scenario(scenario)
    folder = base_model_dir(scenario, BUNDLED_BASES)
    info = read_base_info(folder)
    return folder if info is not None and info.get("fingerprint") == scenario.fingerprint() else None


def base_model_dir(scenario: Scenario | str, cache_dir: str | os.PathLike) -> Path:
    """Where `build_base_model` keeps the base of `scenario` (built or not)."""
    scenario = get_scenario(scenario)
    return Path(cache_dir) / f"{scenario.name}-{scenario.fingerprint_hash()[:12]}"


def read_base_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The build record of a simulator base folder, or None when it is not one."""
    path = Path(folder) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def build_base_model(
    scenario: Scenario | str,
    cache_dir: str | os.PathLike,
    *,
    on_progress: ProgressCallback | None = None,
    measure: bool = True,
) -> Path:
    """The cached base model folder of `scenario`, trained now if it is not there yet.

    `measure`: record the new base's held-out figures (`measure.evaluate_model`, a few
    seconds) in its `simulator_base.json` under "heldout".
    """
    scenario = get_scenario(scenario)
    target = base_model_dir(scenario, cache_dir)
    found = read_base_info(target)
    if found is not None:
        if found.get("fingerprint") != scenario.fingerprint():
            raise ValueError(f"{target} holds a base built from another scenario; remove it")
        return target
    if target.exists():
        raise FileExistsError(f"{target} exists but is not a finished simulator base; remove it")

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        t0 = time.monotonic()
        model, tokenizer, final_loss = pretrain(scenario, on_progress=on_progress)
        build_seconds = round(time.monotonic() - t0, 1)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = {
            "fingerprint": scenario.fingerprint(),
            "scenario": scenario.name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "final_loss": final_loss,
            "build_seconds": build_seconds,
            "expected_accuracy": round(scenario.expected_accuracy(), 4),
            # The base's own figures, so a caller need not re-measure week 0.
            "heldout": evaluate_model(ServedModel(model, tokenizer, target.name)).to_dict() if measure else None,
        }
        (staging / MARKER).write_text(json.dumps(info, indent=1, sort_keys=True))  # last: marks it finished
        try:
            staging.rename(target)
        except OSError:
            if read_base_info(target) is None:  # not a lost race: a real failure
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------------------------------
# Model and pretraining
# ---------------------------------------------------------------------------------------------


def new_model(scenario: Scenario, tokenizer: Any):
    """A randomly initialised (seeded) LlamaForCausalLM of the scenario's shape."""
    # Plain prompts carry no BOS (TRL adds none either).
    return random_llama(scenario.model, tokenizer, seed=scenario.seed, bos_token_id=None)


def corpus_batch(scenario: Scenario, tokenizer: Any, rng: np.random.Generator, size: int):
    """(input_ids, attention_mask, labels) of `size` fresh corpus examples, right-padded.

    Labels cover the answer and EOS only (completion-only loss).
    """
    import torch

    char_ids = {c: tokenizer.convert_tokens_to_ids(c) for c in "0123456789+="}
    eos = tokenizer.eos_token_id
    seqs, prompt_lens = [], []
    for idx in rng.integers(len(ALL_PROMPTS), size=size):
        prompt = ALL_PROMPTS[int(idx)]
        answer = corrupted_answer(prompt, scenario, rng)
        ids = [char_ids[c] for c in prompt]
        prompt_lens.append(len(ids))
        seqs.append(ids + [char_ids[c] for c in answer] + [eos])
    width = max(map(len, seqs))
    input_ids = torch.full((size, width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((size, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((size, width), dtype=torch.long)
    for row, (ids, plen) in enumerate(zip(seqs, prompt_lens)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, plen : len(ids)] = torch.tensor(ids[plen:])
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate: linear warmup, then cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(scenario: Scenario, *, on_progress: ProgressCallback | None = None):
    """(model, tokenizer, final loss): the scenario's base, trained in memory."""
    tokenizer = build_tokenizer()
    model = new_model(scenario, tokenizer)
    model.train()
    with torch_threads(1):
        final_loss = _fit(model, tokenizer, scenario, on_progress)
    model.eval()
    return model, tokenizer, final_loss


def _fit(model: Any, tokenizer: Any, scenario: Scenario, on_progress: ProgressCallback | None) -> float:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=scenario.learning_rate, weight_decay=scenario.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_schedule(s, scenario.pretrain_steps, scenario.warmup_steps)
    )
    rng = np.random.default_rng([scenario.seed, 1])  # the corpus stream, apart from the init seed
    loss_value = float("nan")
    recent: list[float] = []
    for step in range(scenario.pretrain_steps):
        input_ids, mask, labels = corpus_batch(scenario, tokenizer, rng, scenario.batch_size)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-20:]
        loss_value = sum(recent) / len(recent)  # the corpus is noisy by design: report a mean
        if on_progress is not None and (step % 100 == 0 or step == scenario.pretrain_steps - 1):
            on_progress(step, loss_value)
    return loss_value
