"""The pairwise judge: an LLM compares the candidate's and the baseline's answer to a prompt.

* The template is one file (`judge_prompt.md` beside this module, or a deployment's own),
  read at run time, with `{prompt}`, `{answer_a}` and `{answer_b}` slots; it asks for
  MT-Bench's verdict format, `[[A]]`, `[[B]]` or `[[C]]` (tie).
* Both orders are asked (candidate as A, then as B), because LLM judges favour a position;
  a pair scores the mean of its valid verdicts from the candidate's side (win 1, tie 0.5,
  loss 0), so a judge that always says "A" scores every pair a tie.
* Parsing is strict: an answer without exactly one distinct verdict tag (no tag, or "[[A]]"
  and "[[B]]" both) is junk, counted and left out; a pair with no valid verdict drops out.
* Identical answers are a tie without asking: nothing to compare, and no judge call to pay.
* Backends: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, OpenAI) through the
  `openai` client, or a local causal LM by hub name or path through transformers.

Why not distilabel's judge tasks: `PrometheusEval`'s relative mode allows no tie and fixes its
own template and rubric, `PairRM` is a reward model that needs `llm-blender`, and
`UltraFeedback` rates answers on an absolute scale; none takes our template file and the
pipeline runtime (cache folders, a BibTeX fetch) adds minutes to the 10-minute main job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kto_pipeline.evaluate.intervals import Interval, bootstrap_mean

JUDGE_PROMPT_FILE = Path(__file__).with_name("judge_prompt.md")
SLOTS = ("prompt", "answer_a", "answer_b")
VERDICT_A, VERDICT_B, VERDICT_TIE = "A", "B", "tie"
_VERDICT = re.compile(r"\[\[\s*(A|B|C|TIE)\s*\]\]", re.IGNORECASE)
_SLOT = re.compile(r"\{(" + "|".join(SLOTS) + r")\}")


def load_template(path: str | Path | None = None) -> str:
    """The judge template text; it must hold each of `{prompt}`, `{answer_a}`, `{answer_b}` once."""
    text = Path(path or JUDGE_PROMPT_FILE).read_text(encoding="utf-8")
    found = _SLOT.findall(text)
    if sorted(found) != sorted(SLOTS):
        raise ValueError(f"judge template {path or JUDGE_PROMPT_FILE} must hold {SLOTS} once each, found {found}")
    return text


def render(template: str, prompt: str, answer_a: str, answer_b: str) -> str:
    """The template with its slots filled in one pass (an answer that contains "{answer_b}" stays text)."""
    values = {"prompt": prompt, "answer_a": answer_a, "answer_b": answer_b}
    return _SLOT.sub(lambda m: values[m.group(1)], template)


def parse_verdict(text: str | None) -> str | None:
    """ "A", "B" or "tie" from a judge's answer; None (junk) unless exactly one distinct tag appears."""
    if not text:
        return None
    tags = {t.upper() for t in _VERDICT.findall(text)}
    if len(tags) != 1:
        return None
    tag = tags.pop()
    return VERDICT_TIE if tag in ("C", "TIE") else tag


class JudgeBackend(Protocol):
    """Answers judge messages: one reply text per request (None when the request failed)."""

    name: str

    def complete(self, requests: Sequence[str]) -> list[str | None]: ...


class OpenAIJudge:
    """A judge behind an OpenAI-compatible `/v1/chat/completions` endpoint, greedy, `concurrency` calls in flight."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 512,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        seed: int = 0,
    ):
        from openai import OpenAI

        # A local server (vLLM, the simulator's oracle) checks no key, but the client insists on one.
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=max_retries)
        self.model, self.name = model, f"{model} @ {base_url}"
        self.max_tokens, self.concurrency, self.seed = max_tokens, concurrency, seed

    def _one(self, text: str) -> str | None:
        from openai import OpenAIError

        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": text}],
                temperature=0.0,
                max_tokens=self.max_tokens,
                seed=self.seed,
            )
        except OpenAIError:
            return None  # counted as junk: one failed call must not fail the week's report
        return reply.choices[0].message.content if reply.choices else None

    def complete(self, requests: Sequence[str]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self._one, requests))


class TransformersJudge:
    """A local causal LM as the judge (chat template when the tokenizer has one), greedy."""

    def __init__(
        self, model: str, *, device: str | None = None, max_new_tokens: int = 512, batch_size: int = 4
    ) -> None:
        self.model_ref, self.name = model, model
        self.device, self.max_new_tokens, self.batch_size = device, max_new_tokens, batch_size

    def complete(self, requests: Sequence[str]) -> list[str | None]:
        from kto_pipeline.evaluate.generation import generate_local

        return list(
            generate_local(
                self.model_ref,
                [[{"role": "user", "content": r}] for r in requests],
                max_new_tokens=self.max_new_tokens,
                temperature=0.0,
                batch_size=self.batch_size,
                device=self.device,
                seed=0,
            )
        )


@dataclass(frozen=True)
class PairVerdicts:
    """One prompt's two verdicts (candidate as A, candidate as B) and its score for the candidate."""

    candidate_first: str | None
    candidate_second: str | None
    score: float | None  # None: no valid verdict
    identical: bool = False

    @property
    def label(self) -> str:
        if self.identical:
            return "tie (identical answers)"
        if self.score is None:
            return "no verdict"
        return {1.0: "candidate wins", 0.0: "champion wins"}.get(self.score, "tie" if self.score == 0.5 else "split")


@dataclass(frozen=True)
class PairwiseJudgement:
    """The judge's verdicts per prompt and the candidate's win rate (ties half) with its interval."""

    judge: str
    pairs: tuple[PairVerdicts, ...]
    win_rate: Interval
    calls: int
    junk: int
    inconsistent: int  # pairs whose two orders disagree (position bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "win_rate": self.win_rate.to_dict(),
            "calls": self.calls,
            "junk": self.junk,
            "inconsistent": self.inconsistent,
            "identical": sum(p.identical for p in self.pairs),
        }


def _candidate_score(verdict: str | None, candidate_slot: str) -> float | None:
    if verdict is None:
        return None
    if verdict == VERDICT_TIE:
        return 0.5
    return 1.0 if verdict == candidate_slot else 0.0


def judge_pairs(
    prompts: Sequence[str],
    candidate: Sequence[str],
    baseline: Sequence[str],
    backend: JudgeBackend,
    *,
    template: str | None = None,
    confidence: float,
    n_resamples: int,
    seed: int,
    on_progress: Callable[[str], None] | None = None,
) -> PairwiseJudgement:
    """Ask `backend` about each (prompt, candidate, baseline) in both orders; the win rate of the candidate."""
    if not len(prompts) == len(candidate) == len(baseline):
        raise ValueError("prompts and both models' answers must align")
    template = template if template is not None else load_template()
    asked = [i for i, (c, b) in enumerate(zip(candidate, baseline)) if c != b]
    requests = []
    for i in asked:
        requests.append(render(template, prompts[i], candidate[i], baseline[i]))  # candidate is A
        requests.append(render(template, prompts[i], baseline[i], candidate[i]))  # candidate is B
    replies = backend.complete(requests) if requests else []
    if on_progress:
        on_progress(f"judge {backend.name}: {len(requests)} calls for {len(asked)} differing answer pairs")
    verdicts = {i: (parse_verdict(replies[2 * k]), parse_verdict(replies[2 * k + 1])) for k, i in enumerate(asked)}
    pairs, junk, inconsistent = [], 0, 0
    for i in range(len(prompts)):
        if i not in verdicts:
            pairs.append(PairVerdicts(VERDICT_TIE, VERDICT_TIE, 0.5, identical=True))
            continue
        first, second = verdicts[i]
        scores = [s for s in (_candidate_score(first, "A"), _candidate_score(second, "B")) if s is not None]
        junk += (first is None) + (second is None)
        inconsistent += len(scores) == 2 and scores[0] != scores[1]
        pairs.append(PairVerdicts(first, second, sum(scores) / len(scores) if scores else None))
    valid = [p.score for p in pairs if p.score is not None]
    return PairwiseJudgement(
        judge=backend.name,
        pairs=tuple(pairs),
        win_rate=bootstrap_mean(valid, confidence=confidence, n_resamples=n_resamples, seed=seed),
        calls=len(requests),
        junk=junk,
        inconsistent=inconsistent,
    )
