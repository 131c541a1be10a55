"""DEITA scoring (complexity × quality), as a plain library.

DEITA (Liu et al. 2023, hkust-nlp/deita) scores a sample with two fine-tuned causal LMs: a
complexity scorer reads the instruction, a quality scorer reads instruction + response. Each
is prompted with a fixed template and the score is the expectation Σ pᵢ·i, i = 1..6, where p is
the softmax over the next-token logits of the digits "1".."6" at the end of the prompt (one
prefill, no generation). The evol score is complexity × quality.

Two backends compute a score for a list of prompts:
- `TransformersScoreBackend`: any causal LM by hub name or local path, batched prefill with left
  padding, for CPU runs, tests and small GPU jobs.
- `OpenAIScoreBackend`: an OpenAI-compatible completions server (vLLM serving the scorer) asked
  for one token with top-K logprobs, so a GPU box can score millions of rows.

`DeitaScorer` renders the templates (truncating long fields inside the template, so the tail
the score is read after stays intact), scores each distinct prompt and each distinct
(prompt, completion) once, and returns complexity, quality and evol_score per row.

DEITA's diversity-aware selection lives in `kto_pipeline.curate.select`: it runs whether or not
a scorer ran.

Modules: `prompts` (the templates, rendering, fitting long fields by elision), `digits` (the
score read from the digit tokens), `backends` (the local and OpenAI-compatible backends),
`scorer` (`DeitaScorer`, `ScoreResult`, `SCORE_COLUMNS`).
"""

from kto_pipeline.curate.deita.backends import OpenAIScoreBackend, ScoreBackend, TransformersScoreBackend
from kto_pipeline.curate.deita.digits import (
    FALLBACK_SCORE,
    SCORE_DIGITS,
    digit_logprobs,
    digit_token_ids,
    expected_score,
)
from kto_pipeline.curate.deita.prompts import COMPLEXITY_TEMPLATE, ELISION, QUALITY_TEMPLATE, render_prompts
from kto_pipeline.curate.deita.scorer import SCORE_COLUMNS, DeitaScorer, ScoreResult

__all__ = [
    "COMPLEXITY_TEMPLATE",
    "ELISION",
    "FALLBACK_SCORE",
    "QUALITY_TEMPLATE",
    "SCORE_COLUMNS",
    "SCORE_DIGITS",
    "DeitaScorer",
    "OpenAIScoreBackend",
    "ScoreBackend",
    "ScoreResult",
    "TransformersScoreBackend",
    "digit_logprobs",
    "digit_token_ids",
    "expected_score",
    "render_prompts",
]
