"""The simulated teacher: a stronger model for the synthetic top-up, served beside the judge.

The top-up asks a teacher LLM, through distilabel's OpenAILLM, either to answer a prompt whose
answer users rejected better than that answer (desirable rows are short) or to write a
plausible answer with one subtle flaw (undesirable rows are short). This teacher answers the
toy task like a model that is right `accuracy` of the time (0.9: stronger than the bases, not
an oracle), and when asked for a flawed answer writes one a model of the task would: the
carry dropped or doubled, or the ones digit off by one. It reads which of the two it is asked
for the way the judge reads its template: from the literal opening of the configured
instruction templates (the system message), so a request it cannot read is answered with a
400 naming the problem, which the top-up records as a failed generation, never as a row.

Each answer is a function of the request and the seed alone (reruns give the same rows).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kto_pipeline.curate.synthesis.prompts import DEFAULT_DEGRADE_TEMPLATE, DEFAULT_IMPROVE_TEMPLATE
from kto_pipeline.sim.task import has_carry, parse_question

TEACHER_MODEL = "sim-teacher"
# One top-up run against it takes well under a minute; a run past this is a distilabel hang,
# killed and started again (GeneratorResource.attempts) long before the 600 s default.
TEACHER_RUN_TIMEOUT_S = 240
# Requests a distilabel batch sends it (production's default is 8, sized for rate limits).
TEACHER_BATCH_SIZE = 64
IMPROVE, DEGRADE = "improve", "degrade"


class TeacherRequestError(ValueError):
    """A request the teacher cannot answer (the server's 400)."""


def literal_opening(template: str) -> str:
    """The template's text before its first Jinja tag: what every rendering starts with."""
    return re.split(r"\{[{%#]", template, maxsplit=1)[0]


def subtly_wrong(a: int, b: int, rng: np.random.Generator) -> int:
    """A wrong sum a model of this task would plausibly write (never the right one)."""
    right = a + b
    slips = [right + 1, right - 1, right - 10 if has_carry(f"{a}+{b}=") else right + 10]
    return int(slips[int(rng.integers(len(slips)))])


@dataclass
class SimTeacher:
    """Answers top-up requests for the toy task; counts what it was asked."""

    accuracy: float = 0.9
    seed: int = 0
    improve_opening: str = literal_opening(DEFAULT_IMPROVE_TEMPLATE)
    degrade_opening: str = literal_opening(DEFAULT_DEGRADE_TEMPLATE)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {self.accuracy}")
        if not self.improve_opening.strip() or not self.degrade_opening.strip():
            raise ValueError("the instruction templates must open with literal text the teacher can read")

    def direction(self, instruction: str) -> str:
        if instruction.startswith(self.improve_opening):
            return IMPROVE
        if instruction.startswith(self.degrade_opening):
            return DEGRADE
        raise TeacherRequestError("the system message is neither the improve nor the degrade instruction")

    def reply(self, messages: Sequence[Mapping[str, object]]) -> str:
        if not messages or messages[0].get("role") != "system":
            raise TeacherRequestError("the first message must be the system instruction")
        users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
        if not users:
            raise TeacherRequestError("no user message to answer")
        direction = self.direction(str(messages[0].get("content", "")))
        try:
            a, b = parse_question(users[-1])
        except ValueError as exc:
            raise TeacherRequestError(f"the last user message holds no question: {exc}") from None
        key = hashlib.sha256(json.dumps([self.seed, list(map(dict, messages))], sort_keys=True).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(key[:8], "big"))
        right = direction == IMPROVE and rng.random() < self.accuracy
        self.counts[f"{direction}_{'right' if right else 'wrong'}"] += 1
        return str(a + b if right else subtly_wrong(a, b, rng))
