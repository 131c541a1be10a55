"""The toy task: two-digit addition, its prompt split, and its character-level tokenizer.

`23+45=` → `68`: operands 10–99, so 8,100 prompts. A fixed, seeded held-out set (1,000
prompts) is only ever used to measure models; weekly traffic is drawn from the other 7,100
without replacement across weeks, so no prompt is seen twice in production (the feasibility
notes: reusing prompts makes week-over-week gains look better than they are).

Prompts are plain strings (no chat template). A user may wrap the question in chatter (see
`users.py`), so `question_of` pulls the bare question off the end of any prompt text.

The tokenizer is character-level: a `WordLevel` vocabulary over the digits, `+` and `=`,
with `<pad>`/`<eos>`/`<unk>`, and a `Split(Regex("."), "isolated")` pre-tokenizer, wrapped in
`PreTrainedTokenizerFast`. Every other character becomes `<unk>` (one token per character).
The pipeline's PII placeholders (`<EMAIL_ADDRESS_1>`…) are added tokens, so a redacted prompt
costs one token per placeholder instead of ~17 `<unk>`s plus a stray digit token for the
`_1`. Added and special tokens are matched before pre-tokenisation, which is also why TRL's
habit of appending the EOS *text* (`"68<eos>"`) tokenises to the EOS id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

OPERANDS = range(10, 100)
ALL_PROMPTS: tuple[str, ...] = tuple(f"{a}+{b}=" for a in OPERANDS for b in OPERANDS)
N_HELDOUT = 1000
TASK_SEED = 0  # the held-out set and the traffic order; fixed so every run compares alike

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
TASK_CHARS = "0123456789+="
# Placeholders that Presidio's entity counter writes into prompts this simulator produces
# (see kto_pipeline.curate.redaction); indices beyond 3 or other types fall back to <unk>s.
PLACEHOLDER_TYPES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "URL")
PLACEHOLDERS: tuple[str, ...] = tuple(f"<{t}_{i}>" for t in PLACEHOLDER_TYPES for i in (1, 2, 3))
# What a sampled token that is neither task text nor EOS is shown as. "?" is itself unknown
# to the tokenizer, so the text re-tokenises to <unk>: training sees what was served.
UNKNOWN_TEXT = "?"

_QUESTION = re.compile(r"(\d{2})\+(\d{2})=$")


def parse_question(prompt: str) -> tuple[int, int]:
    """(a, b) of the question a prompt ends with; ValueError when it ends with none."""
    match = _QUESTION.search(prompt)
    if match is None:
        raise ValueError(f"no 'dd+dd=' question at the end of {prompt[-40:]!r}")
    return int(match.group(1)), int(match.group(2))


def question_of(prompt: str) -> str:
    """The bare question (`23+45=`) at the end of a prompt, chatter and PII stripped."""
    a, b = parse_question(prompt)
    return f"{a}+{b}="


def right_answer(prompt: str) -> str:
    a, b = parse_question(prompt)
    return str(a + b)


def has_carry(prompt: str) -> bool:
    """True when the ones digits carry into the tens (the carry_bug scenario's weak spot)."""
    a, b = parse_question(prompt)
    return a % 10 + b % 10 >= 10


def is_right(prompt: str, answer: str) -> bool:
    return answer.strip() == right_answer(prompt)


def accuracy(prompts: Iterable[str], answers: Iterable[str]) -> float:
    """Share of answers that are right for their prompts (strict: '068' or '68 ' count as
    wrong only when stripping does not make them equal)."""
    flags = [is_right(p, a) for p, a in zip(prompts, answers, strict=True)]
    if not flags:
        raise ValueError("accuracy of no answers")
    return sum(flags) / len(flags)


@dataclass(frozen=True)
class TaskSplit:
    """The held-out prompts and the traffic pool in its fixed, seeded draw order."""

    seed: int
    heldout: tuple[str, ...]
    traffic: tuple[str, ...]

    def week_prompts(self, week_index: int, n: int) -> list[str]:
        """The fresh traffic prompts of week `week_index` (0-based) at `n` prompts a week.

        Week k takes traffic[k·n : (k+1)·n]: stateless (any week can be built alone, e.g. by
        a Dagster partition) and never reused across weeks as long as `n` stays the same.
        """
        if week_index < 0 or n < 1:
            raise ValueError("week_index must be ≥ 0 and n ≥ 1")
        start, stop = week_index * n, (week_index + 1) * n
        if stop > len(self.traffic):
            raise ValueError(
                f"week {week_index} at {n} prompts/week needs {stop} traffic prompts; the pool has "
                f"{len(self.traffic)} (at most {len(self.traffic) // n} weeks at this rate)"
            )
        return list(self.traffic[start:stop])

    def max_weeks(self, n: int) -> int:
        return len(self.traffic) // n


@lru_cache(maxsize=8)
def task_split(seed: int = TASK_SEED, n_heldout: int = N_HELDOUT) -> TaskSplit:
    """The seeded split of the 8,100 prompts: held-out first, the rest in traffic order."""
    if not 0 < n_heldout < len(ALL_PROMPTS):
        raise ValueError(f"n_heldout must be in (0, {len(ALL_PROMPTS)})")
    order = np.random.default_rng(seed).permutation(len(ALL_PROMPTS))
    heldout = tuple(sorted(ALL_PROMPTS[i] for i in order[:n_heldout]))
    traffic = tuple(ALL_PROMPTS[i] for i in order[n_heldout:])
    return TaskSplit(seed=seed, heldout=heldout, traffic=traffic)


def build_tokenizer():
    """The character-level `PreTrainedTokenizerFast` (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *TASK_CHARS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    # Non-special: a placeholder is prompt text, kept by decode(skip_special_tokens=True).
    fast.add_tokens([AddedToken(p, special=False, normalized=False) for p in PLACEHOLDERS])
    return fast
