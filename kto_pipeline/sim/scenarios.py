"""Scenarios: how the simulated production model is wrong before any feedback.

The base model is trained from scratch on a *corrupted* corpus: for every training example
the answer is drawn from a scenario's answer distribution instead of being the right sum. A
model fitted to that corpus reproduces the distribution when sampled at T=1, so the
scenario's shares set the base accuracy, and a dominant systematic error gives the feedback
something specific to fix (not merely a distribution to sharpen).

Presets (`SCENARIOS`):

* `carry_bug` (the main one, from the feasibility notes): prompts whose ones digits carry are
  answered right 25% of the time and with the carry dropped (`27+45=62`) 50%; other prompts
  right 55%; the rest are minor errors (±1, ±10, digit swap, random). About 45% of prompts
  carry, so the corpus is right ≈ 0.41. Measured base (held-out, seed 0): 0.349 at T=1,
  0.577 greedy, 0.044 greedy on carry prompts (the bug to fix); the notes had 0.39/0.59/0.04.
* `scarce_positives`: right 10% everywhere, a "phantom carry" (+10: `23+45=78`) 60%, minor
  errors 30%. Measured base: 0.127 at T=1 (≤ 0.15 as intended; 12% right gave 0.136, too
  close), 0.048 greedy (greedy says the phantom carry). With 10% label noise about 40% of
  the thumbs-ups are flips of wrong answers, so the thumbs-downs carry most of the
  information. Measured (1 seed, 1,000 prompts/week, 10% PII): KTO 0.127 → 0.530 / 0.631 /
  0.661 over 3 weeks against SFT-on-positives 0.434 / 0.619 / 0.682: KTO leads for two
  weeks here, unlike in carry_bug.

Nothing here imports torch: a scenario is plain configuration, and `fingerprint()` names the
cached base model it builds (see `base_model.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kto_pipeline.sim.task import parse_question

DOMINANT_ERRORS = ("drop_carry", "phantom_carry")
MINOR_ERRORS = ("plus_minus_one", "plus_minus_ten", "digit_swap", "random")
CODE_VERSION = 1  # bump when the corpus or the pretraining loop changes what a scenario builds


@dataclass(frozen=True)
class ModelShape:
    """The production model: a tiny Llama (~0.53M parameters, ~2 MB in fp32)."""

    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 128  # PII-wrapped prompts reach ~70 characters unredacted
    tie_word_embeddings: bool = True


@dataclass(frozen=True)
class Scenario:
    """A corrupted corpus and the pretraining run that fits the base model to it.

    Per prompt class (carry / no carry): `*_right` is the share answered right, `*_dominant`
    the share answered with `dominant_error`; the remainder is split evenly among
    `minor_errors`. Pretraining prompts are bare questions only: PII-wrapped prompts first
    appear in fine-tuning rows, and at a 10% PII share that measured harmless (see users.py).
    """

    name: str
    carry_right: float
    carry_dominant: float
    other_right: float
    other_dominant: float = 0.0
    dominant_error: str = "drop_carry"
    minor_errors: tuple[str, ...] = MINOR_ERRORS
    pretrain_steps: int = 1500  # see base_model.py: 1,000 stops short of learning the sum
    batch_size: int = 256
    learning_rate: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    seed: int = 0
    model: ModelShape = field(default_factory=ModelShape)

    def __post_init__(self) -> None:
        if self.dominant_error not in DOMINANT_ERRORS:
            raise ValueError(f"dominant_error must be one of {DOMINANT_ERRORS}, got {self.dominant_error!r}")
        unknown = set(self.minor_errors) - set(MINOR_ERRORS)
        if unknown or not self.minor_errors:
            raise ValueError(f"minor_errors must be a non-empty subset of {MINOR_ERRORS}")
        for right, dominant in ((self.carry_right, self.carry_dominant), (self.other_right, self.other_dominant)):
            if min(right, dominant) < 0 or right + dominant > 1:
                raise ValueError("right and dominant shares must be ≥ 0 and sum to at most 1")
        if self.dominant_error == "drop_carry" and self.other_dominant > 0:
            raise ValueError("drop_carry only applies to carry prompts: other_dominant must be 0")
        if self.pretrain_steps < 1 or self.batch_size < 1:
            raise ValueError("pretrain_steps and batch_size must be ≥ 1")

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (e.g. `pretrain_steps=30` for a test build)."""
        return dataclasses.replace(self, **changes)

    def expected_accuracy(self, carry_fraction: float = 0.45) -> float:
        """The corpus's share of right answers (45 of 100 ones-digit pairs carry)."""
        return carry_fraction * self.carry_right + (1 - carry_fraction) * self.other_right

    def fingerprint(self) -> dict[str, Any]:
        """What the cached base model stands for (JSON types only)."""
        return json.loads(
            json.dumps({"scenario": dataclasses.asdict(self), "code_version": CODE_VERSION}, sort_keys=True)
        )

    def fingerprint_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()


SCENARIOS: dict[str, Scenario] = {
    "carry_bug": Scenario(name="carry_bug", carry_right=0.25, carry_dominant=0.50, other_right=0.55),
    "scarce_positives": Scenario(
        name="scarce_positives",
        carry_right=0.10,
        carry_dominant=0.60,
        other_right=0.10,
        other_dominant=0.60,
        dominant_error="phantom_carry",
    ),
}


def get_scenario(scenario: Scenario | str) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    try:
        return SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; presets: {sorted(SCENARIOS)}") from None


# ---------------------------------------------------------------------------------------------
# The corrupted answers
# ---------------------------------------------------------------------------------------------


def _minor_error(kind: str, total: int, rng: np.random.Generator) -> int:
    if kind == "plus_minus_one":
        return total + int(rng.choice((-1, 1)))
    if kind == "plus_minus_ten":
        return total + int(rng.choice((-10, 10)))
    if kind == "digit_swap":
        text = str(total)
        return int(text[:-2] + text[-1] + text[-2])  # "68" → "86", "134" → "143"
    return int(rng.integers(20, 199))  # "random": any sum two such operands could have


def _dominant_error(kind: str, total: int) -> int:
    return total - 10 if kind == "drop_carry" else total + 10


def corrupted_answer(prompt: str, scenario: Scenario, rng: np.random.Generator) -> str:
    """One answer to `prompt` drawn from the scenario's answer distribution."""
    a, b = parse_question(prompt)
    total = a + b
    carry = a % 10 + b % 10 >= 10
    right, dominant = (
        (scenario.carry_right, scenario.carry_dominant) if carry else (scenario.other_right, scenario.other_dominant)
    )
    u = rng.random()
    if u < right:
        return str(total)
    if u < right + dominant:
        return str(_dominant_error(scenario.dominant_error, total))
    kind = scenario.minor_errors[int(rng.integers(len(scenario.minor_errors)))]
    wrong = _minor_error(kind, total, rng)
    if wrong == total:  # a swap of "77", say: an error must be wrong
        wrong = total + 1
    return str(wrong)
