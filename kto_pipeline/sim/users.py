"""The oracle user and a week of simulated production traffic, written as a feedback dump.

A week: each fresh traffic prompt is asked once by a (seeded) user at a (seeded) time inside
the week; the champion answers the bare question at T=1 (`serving.sample_answers`); the
oracle user reacts:

* **thumbs**: up iff the answer is right, then flipped with probability `label_noise`
  (default 10%; observed thumbs-up rate = noise + (1 − 2·noise)·true accuracy);
* **edits**: a share (`edit_share`, default 20%) of the thumbs-down *wrong* answers get an
  `edited_completion` with the right answer (a right answer given a thumbs-down by noise is
  never "corrected");
* **PII**: a share (`pii_share`, default 10%) of users paste a name, an e-mail address and/or
  a phone number before the question ("Hi, I'm Jane Doe (jane.doe@example.com, +1 415 555
  0134). 23+45="); the app still answers only the bare question at the end of the message,
  so the model's input never holds PII, but the logged prompt (the record's `prompt`, plain
  text) does. The pipeline's redaction replaces the e-mail and phone with `<EMAIL_ADDRESS_1>`
  / `<PHONE_NUMBER_1>` (the name too, as `<PERSON_1>`, only when a spaCy NER model is
  installed), so training sees "Hi, I'm Jane Doe (<EMAIL_ADDRESS_1>, <PHONE_NUMBER_1>).
  23+45=": the tokenizer has those placeholders as single tokens and every other chatter
  character as `<unk>`. The base never saw such prefixes; at a 10% share they do not hurt
  (KTO week 1 on carry_bug: 0.443 with PII, 0.425 without, same seeds);
* **repeats**: a share (`repeat_share`, default 5%) of asks are asked again by the same user
  later that week (same prompt text, a fresh answer): exact duplicates when the answer and
  thumb repeat, contradictions or near duplicates otherwise, for dedup to handle.

Everything is a function of (seed, week, model): the same inputs give the same records.
`write_week_dump` writes them as one contract-format JSONL dump, atomically, with an mtime
after the week's last record (ingest quarantines records later than their dump's mtime +
`ingest.FUTURE_TOLERANCE`).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.core.weeks import WeekCalendar
from kto_pipeline.sim.serving import ModelRef, sample_answers
from kto_pipeline.sim.task import is_right, question_of, right_answer

DUMP_PREFIX = "feedback-"
APP_METADATA = {"app": "adder-simulator"}

_FIRST = ("Jane", "Omar", "Aiko", "Priya", "Lars", "Chen", "Maria", "Tomas", "Amara", "Noah", "Ines", "Ravi")
_LAST = ("Doe", "Haddad", "Tanaka", "Raman", "Eriksen", "Wei", "Lopez", "Novak", "Okafor", "Smith", "Costa", "Patel")
_DOMAINS = ("example.com", "example.org", "mail.example.net")
_TEMPLATES = (
    "Hi, I'm {name} ({email}, {phone}). {q}",
    "{name} here, my email is {email}. {q}",
    "Call me on {phone} if anything is unclear. {q}",
    "From {name} <{email}>: {q}",
)
# What the tests (and anyone auditing a dump) use to recognise the PII this module pastes.
EMAIL_PATTERN = re.compile(r"[a-z]+\.[a-z]+\d*@(?:mail\.)?example\.(?:com|org|net)")
PHONE_PATTERN = re.compile(r"\+1 415 555 \d{4}|\(415\) 555-\d{4}|\+44 20 7946 \d{4}")
NAME_PATTERN = re.compile(r"\b(?:" + "|".join(_FIRST) + r") (?:" + "|".join(_LAST) + r")\b")


@dataclass(frozen=True)
class OracleUser:
    """How simulated users react to answers (see the module docstring)."""

    label_noise: float = 0.10
    edit_share: float = 0.20
    pii_share: float = 0.10
    repeat_share: float = 0.05
    n_users: int = 300

    def __post_init__(self) -> None:
        for name in ("label_noise", "edit_share", "pii_share", "repeat_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.label_noise >= 0.5:
            raise ValueError("label_noise ≥ 0.5 would make thumbs meaningless")
        if self.n_users < 1:
            raise ValueError("n_users must be ≥ 1")


@dataclass(frozen=True)
class Ask:
    """The ground truth behind one record (never written to the dump)."""

    record_id: str
    question: str  # what the model was asked
    answer: str  # what it said
    correct: bool
    label: bool  # the thumb the user gave
    flipped: bool  # the thumb disagrees with correctness (label noise)
    edited: bool
    pii: bool
    repeat_of: str | None  # the record id first asked, for a repeat


@dataclass
class WeekTraffic:
    """A simulated week: contract records (timestamp order) and the truth behind them."""

    week: str
    model_version: str
    records: list[dict[str, Any]]
    asks: list[Ask] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        n = len(self.asks)
        first = [a for a in self.asks if a.repeat_of is None]
        return {
            "week": self.week,
            "model_version": self.model_version,
            "records": n,
            "prompts": len(first),
            "true_accuracy": sum(a.correct for a in self.asks) / n if n else float("nan"),
            "thumbs_up_rate": sum(a.label for a in self.asks) / n if n else float("nan"),
            "flipped": sum(a.flipped for a in self.asks),
            "edits": sum(a.edited for a in self.asks),
            "pii": sum(a.pii for a in self.asks),
            "repeats": n - len(first),
        }


def _week_seeds(seed: int, week: str) -> tuple[int, int]:
    """(user-behaviour seed, sampling seed) for a week: independent streams per week."""
    state = np.random.SeedSequence([seed, date.fromisoformat(week).toordinal()]).generate_state(2)
    return int(state[0]), int(state[1])


def _pii_prompt(question: str, rng: np.random.Generator) -> str:
    first, last = str(rng.choice(_FIRST)), str(rng.choice(_LAST))
    email = (
        f"{first.lower()}.{last.lower()}{'' if rng.random() < 0.5 else int(rng.integers(1, 99))}@{rng.choice(_DOMAINS)}"
    )
    n = int(rng.integers(0, 10000))
    phone = (f"+1 415 555 {n:04d}", f"(415) 555-{n:04d}", f"+44 20 7946 {n % 1000:04d}")[int(rng.integers(3))]
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    return template.format(name=f"{first} {last}", email=email, phone=phone, q=question)


def longest_pii_prompt(question: str) -> str:
    """The longest PII-wrapped form `_pii_prompt` can give `question` (sizes max_length)."""
    first, last = max(_FIRST, key=len), max(_LAST, key=len)
    email = f"{first.lower()}.{last.lower()}98@{max(_DOMAINS, key=len)}"
    phone = "+44 20 7946 0000"  # the longest of the three phone formats
    return max((t.format(name=f"{first} {last}", email=email, phone=phone, q=question) for t in _TEMPLATES), key=len)


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass
class _Plan:
    """Who asks what, when: everything decided before the model answers."""

    prompts: list[str]
    users: list[str]
    times: list[pd.Timestamp]
    repeat_of: list[int | None]
    pii: list[bool]


def _plan_week(
    prompts: Sequence[str], week: str, user: OracleUser, rng: np.random.Generator, calendar: WeekCalendar
) -> _Plan:
    start, end = calendar.window(week)
    span = (end - start).total_seconds()
    n = len(prompts)
    plan = _Plan([], [], [], [], [])
    offsets = np.sort(rng.uniform(0, span - 3600, size=n))  # last hour left for repeats
    for i, question in enumerate(prompts):
        pii = bool(rng.random() < user.pii_share)
        plan.prompts.append(_pii_prompt(question, rng) if pii else question)
        plan.users.append(f"u{int(rng.integers(user.n_users)):04d}")
        plan.times.append(start + pd.Timedelta(seconds=float(offsets[i])))
        plan.repeat_of.append(None)
        plan.pii.append(pii)
    for i in range(n):
        if rng.random() < user.repeat_share:
            later = plan.times[i] + pd.Timedelta(seconds=float(rng.uniform(60, 2 * 86400)))
            plan.prompts.append(plan.prompts[i])
            plan.users.append(plan.users[i])
            plan.times.append(min(later, end - pd.Timedelta(seconds=1)))
            plan.repeat_of.append(i)
            plan.pii.append(plan.pii[i])
    return plan


def simulate_week(
    model_ref: ModelRef,
    prompts: Sequence[str],
    week: str,
    *,
    user: OracleUser | None = None,
    seed: int = 0,
    model_version: str = "champion",
    temperature: float = 1.0,
    calendar: WeekCalendar | None = None,
) -> WeekTraffic:
    """A week of traffic: `prompts` (bare questions, fresh this week) asked, answered by
    `model_ref` at `temperature`, and judged by `user`. Deterministic in (seed, week, model)."""
    user = user or OracleUser()
    calendar = calendar or WeekCalendar()
    behaviour_seed, sampling_seed = _week_seeds(seed, week)
    rng = np.random.default_rng(behaviour_seed)
    plan = _plan_week([question_of(p) for p in prompts], week, user, rng, calendar)
    questions = [question_of(p) for p in plan.prompts]
    answers = sample_answers(model_ref, questions, temperature, sampling_seed)

    ids = [f"sim-{week}-{k:05d}" for k in range(len(plan.prompts))]
    records, asks = [], []
    for k, (prompt, answer) in enumerate(zip(plan.prompts, answers, strict=True)):
        correct = is_right(prompt, answer)
        flipped = bool(rng.random() < user.label_noise)
        label = correct != flipped
        edited = (not label) and (not correct) and bool(rng.random() < user.edit_share)
        record = {
            "id": ids[k],
            "timestamp": _iso(plan.times[k]),
            "prompt": prompt,
            "completion": answer,
            "label": label,
            "user_id": plan.users[k],
            "conversation_id": f"conv-{week}-{k:05d}",
            "model_version": model_version,
            "metadata": dict(APP_METADATA),
        }
        if edited:
            record["edited_completion"] = right_answer(prompt)
        records.append(record)
        repeat_of = plan.repeat_of[k]
        asks.append(
            Ask(
                ids[k],
                questions[k],
                answer,
                correct,
                label,
                flipped,
                edited,
                plan.pii[k],
                None if repeat_of is None else ids[repeat_of],
            )
        )
    order = sorted(range(len(records)), key=lambda k: (records[k]["timestamp"], k))
    return WeekTraffic(week, model_version, [records[k] for k in order], [asks[k] for k in order])


def dump_name(week: str) -> str:
    return f"{DUMP_PREFIX}{week}.jsonl"


def write_week_dump(
    records: Sequence[dict[str, Any]],
    folder: str | os.PathLike,
    week: str,
    *,
    written_at: pd.Timestamp | None = None,
    calendar: WeekCalendar | None = None,
) -> Path:
    """Write `records` as `folder/feedback-<week>.jsonl` (one JSON object per line).

    Written under a hidden temporary name (dump listing skips dot-files) and renamed into
    place, so a reader never sees half a dump. Its mtime is `written_at`, by default one hour
    after the week closes (a nightly export) and never before the latest record: ingest
    rejects records later than their dump's mtime + FUTURE_TOLERANCE.
    """
    calendar = calendar or WeekCalendar()
    _, end = calendar.window(week)
    latest = max((pd.Timestamp(r["timestamp"]) for r in records), default=end)
    when = pd.Timestamp(written_at) if written_at is not None else end + pd.Timedelta(hours=1)
    when = when.tz_localize("UTC") if when.tzinfo is None else when
    if when < latest:
        raise ValueError(f"written_at {when} is before the dump's latest record {latest}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / dump_name(week)
    tmp = folder / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        stamp = when.timestamp()
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, target)  # rename keeps the mtime just set
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
