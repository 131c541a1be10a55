"""Promotion reads answers: the candidate and the baseline answer the week's held-out prompts,
and the answers are scored by judge-free signals (closeness to users' edits, reproduced
thumbs-down answers) and, when one is configured, a pairwise judge.

The baseline is the champion, or the base in week 1 (the model the candidate would replace).
Prompts are the distinct held-out prompts, a seeded sample of `n_prompts` when there are more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.evaluate.answer_signals import (
    DEFAULT_REPRODUCE_THRESHOLD,
    EditSignal,
    ReproductionSignal,
    edit_signal,
    reproduction_signal,
)
from kto_pipeline.evaluate.constants import ROLE_CANDIDATE
from kto_pipeline.evaluate.generation import Prompt, generate_local, generate_openai, served_name
from kto_pipeline.evaluate.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from kto_pipeline.evaluate.judge import JudgeBackend, PairwiseJudgement, judge_pairs
from kto_pipeline.ingest.contract import SIGNAL_EDIT, SIGNAL_EDIT_ORIGINAL, SIGNAL_THUMB
from kto_pipeline.train.examples import trl_example

BACKENDS = ("transformers", "openai")


@dataclass(frozen=True)
class AnswerConfig:
    """How the held-out answers are generated and their signals estimated.

    Parameters that control generation: `n_prompts`, `temperature`, `top_p`, `max_new_tokens`,
    `batch_size`, `seed`, `backend`, `base_url`. Parameters of the estimates: `confidence`,
    `bootstrap_resamples`, `reproduce_threshold`. The report: `report_samples`.
    """

    n_prompts: int = field(
        default=128,
        metadata={"help": "Distinct held-out prompts each model answers (a seeded sample when there are more); 0: off"},
    )
    temperature: float = field(
        default=0.0, metadata={"help": "Sampling temperature; 0 is greedy (what the model believes, same every run)"}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (temperature > 0 only)"})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens"})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per generate call (transformers) or requests in flight (openai)"}
    )
    seed: int = field(default=0, metadata={"help": "Seeds the prompt sample, the sampling and the bootstrap"})
    backend: str = field(
        default="transformers",
        metadata={
            "help": "transformers: load each model (PEFT adapters included) here; openai: an OpenAI-compatible "
            "server (vLLM) that serves each model under its folder name (a week's adapter as --lora-modules <week>=<folder>)"
        },
    )
    base_url: str | None = field(
        default=None, metadata={"help": "openai backend: the server, e.g. http://gpu-box:8000/v1"}
    )
    confidence: float = field(default=DEFAULT_CONFIDENCE, metadata={"help": "Confidence level of every interval"})
    bootstrap_resamples: int = field(default=DEFAULT_RESAMPLES, metadata={"help": "Bootstrap resamples per interval"})
    reproduce_threshold: float = field(
        default=DEFAULT_REPRODUCE_THRESHOLD,
        metadata={"help": "Similarity (normalised edit distance) at which an answer repeats a thumbs-down completion"},
    )
    report_samples: int = field(default=8, metadata={"help": "Sample answers shown side by side in the report"})
    decode_join: str | None = field(
        default=None,
        metadata={
            "help": "transformers backend, tokenizers without a decoder (custom word- or character-level "
            "vocabularies): the text put between tokens ('' for characters); default: the tokenizer's decode"
        },
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "openai" and not self.base_url and self.n_prompts > 0:
            raise ValueError("the openai answer backend needs base_url")


@dataclass(frozen=True)
class HeldoutPrompt:
    """A distinct held-out prompt: its text (what a judge reads), what the model is given, and
    the users' edits and thumbs-down completions recorded for it."""

    text: str
    prompt: Prompt
    edits: tuple[str, ...] = ()
    thumbs_down: tuple[str, ...] = ()


def _key(row: Mapping[str, Any]) -> tuple[str, str]:
    messages = row.get("prompt_messages")
    return str(row["prompt"]), "" if is_missing(messages) else str(messages)


def heldout_prompts(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], data_format: str, n: int, seed: int
) -> list[HeldoutPrompt]:
    """The distinct prompts of `rows` (sorted, then a seeded sample of `n`), with their edits and thumbs-down."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in records:
        groups.setdefault(_key(row), []).append(row)
    keys = sorted(groups)
    if len(keys) > n:
        keys = [keys[i] for i in sorted(np.random.default_rng(seed).choice(len(keys), n, replace=False))]
    out = []
    for key in keys:
        group = groups[key]
        signal = [r.get("signal", SIGNAL_THUMB) for r in group]
        out.append(
            HeldoutPrompt(
                text=key[0],
                prompt=trl_example({**group[0], "completion": "", "label": True}, data_format)["prompt"],
                edits=tuple(str(r["completion"]) for r, s in zip(group, signal) if s == SIGNAL_EDIT),
                thumbs_down=tuple(
                    str(r["completion"])
                    for r, s in zip(group, signal)
                    if not bool(r["label"]) and s in (SIGNAL_THUMB, SIGNAL_EDIT_ORIGINAL)
                ),
            )
        )
    return out


@dataclass(frozen=True)
class AnswerEvaluation:
    """The held-out answers of the candidate and the baseline and what they say."""

    baseline_role: str
    prompts: tuple[HeldoutPrompt, ...]
    answers: dict[str, tuple[str, ...]]
    edit: EditSignal | None
    reproduction: ReproductionSignal | None
    judgement: PairwiseJudgement | None
    config: AnswerConfig

    @property
    def win_rate(self):
        return self.judgement.win_rate if self.judgement is not None else None

    def samples(self, k: int | None = None) -> list[dict[str, str]]:
        """Up to k prompts side by side (differing answers first), with the judge's verdict."""
        k = self.config.report_samples if k is None else k
        cand, base = self.answers[ROLE_CANDIDATE], self.answers[self.baseline_role]
        order = sorted(range(len(self.prompts)), key=lambda i: (cand[i] == base[i], i))[:k]
        return [
            {
                "prompt": self.prompts[i].text,
                self.baseline_role: base[i],
                ROLE_CANDIDATE: cand[i],
                "verdict": self.judgement.pairs[i].label if self.judgement else "no judge",
            }
            for i in order
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_role,
            "n_prompts": len(self.prompts),
            "win_rate": self.win_rate.to_dict() if self.win_rate else None,
            "judge": self.judgement.to_dict() if self.judgement else None,
            "edit": self.edit.to_dict() if self.edit else None,
            "reproduction": self.reproduction.to_dict() if self.reproduction else None,
            "samples": self.samples(),
        }


def _answers(ref: str | Path, prompts: list[Prompt], config: AnswerConfig, device: str | None) -> list[str]:
    common = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "top_p": config.top_p}
    if config.backend == "openai":
        return generate_openai(
            str(config.base_url), served_name(ref), prompts, seed=config.seed, concurrency=config.batch_size, **common
        )
    return generate_local(
        ref,
        prompts,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        decode_join=config.decode_join,
        **common,
    )


def evaluate_answers(
    eval_rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    candidate: str | Path,
    baseline: str | Path,
    baseline_role: str,
    config: AnswerConfig,
    data_format: str,
    judge: JudgeBackend | None = None,
    judge_template: str | None = None,
    device: str | None = None,
    say: Callable[[str], None] | None = None,
) -> AnswerEvaluation | None:
    """Generate both models' answers to the held-out prompts and score them; None when off or no prompts."""
    if config.n_prompts <= 0:
        return None
    prompts = heldout_prompts(eval_rows, data_format, config.n_prompts, config.seed)
    if not prompts:
        return None
    given = [p.prompt for p in prompts]
    cand = tuple(_answers(candidate, given, config, device))
    base = cand if str(baseline) == str(candidate) else tuple(_answers(baseline, given, config, device))
    answers = {ROLE_CANDIDATE: cand, baseline_role: base}
    stats = {"confidence": config.confidence, "n_resamples": config.bootstrap_resamples, "seed": config.seed}
    edited = [(i, e) for i, p in enumerate(prompts) for e in p.edits]
    edit = (
        edit_signal([e for _, e in edited], [cand[i] for i, _ in edited], [base[i] for i, _ in edited], **stats)
        if edited
        else None
    )
    bad = [(i, t) for i, p in enumerate(prompts) for t in p.thumbs_down]
    reproduction = (
        reproduction_signal(
            [t for _, t in bad],
            {role: [a[i] for i, _ in bad] for role, a in answers.items()},
            candidate_role=ROLE_CANDIDATE,
            baseline_role=baseline_role,
            threshold=config.reproduce_threshold,
            **stats,
        )
        if bad
        else None
    )
    judgement = None
    if judge is not None:
        judgement = judge_pairs(
            [p.text for p in prompts], cand, base, judge, template=judge_template, on_progress=say, **stats
        )
    return AnswerEvaluation(baseline_role, tuple(prompts), answers, edit, reproduction, judgement, config)
