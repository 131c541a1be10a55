"""Held-out evaluation of a weekly KTO checkpoint, the promotion decision, and its report.

Each week the trainer produces a candidate. Before it replaces the serving champion we score
base, champion and candidate on the week's held-out rows with the quantities KTO itself
optimises, so an eval number means what the matching training number means:

* sequence log-prob: the SUM of the completion tokens' log-probs given the prompt, tokenised
  and truncated exactly as TRL 1.16's `KTOTrainer` does (see `tokenize_example`) and computed
  through TRL's own fused LM head, batch by batch in row order; one data format for the whole
  set, chosen by the trainer's rule (`choose_data_format`);
* reward r = β·(log πθ − log πref), where the reference is the BASE model for every compared
  model, so rewards are comparable across models (the base itself gets exactly 0);
* z0 per block of `batch_size` rows: the mean log-ratio over TRL's mismatched pairs
  (completion i−1 with prompt i, a +1 rotation inside each block), clamped at 0;
* implicit-reward accuracy: desirable rows with r above β·z0 plus undesirable rows below it,
  ties counting half (the reference scores exactly 0.5); per class accuracies, mean rewards,
  margin, mean z0 (TRL's `kl`) and TRL's weighted KTO loss.

`evaluate_candidates` loads the models one at a time through `checkpoints.load_causal_lm`
(a hub name, model folder, or pipeline checkpoint, LoRA included) and reuses the base
log-probs.

Log-prob ratios never look at text, so a candidate that writes worse answers can still pass
them. `evaluate_answers` has the candidate and the baseline (the champion; the base in week
1) answer the held-out prompts and scores the answers: closeness to users' edits and
reproduced thumbs-down answers (judge-free), and a pairwise LLM judge asked in both orders
(any OpenAI-compatible endpoint or a local model), each with a bootstrap interval.

`decide_promotion` applies a `PromotionPolicy`: no watched metric may regress beyond its
tolerance, no answer signal may be significantly worse, training must not have collapsed.
`write_report` writes `eval_report.md` (decision, signals with intervals, sample answers side
by side, metrics) and two PNG plots, byte-identical for identical inputs. No Dagster here:
the asset layer wraps these functions.

Layout, one stage a module: `eval_set` (rows → token ids), `logps` (log-probs through TRL's
fused LM head), `metrics` (rewards, z0, accuracy, loss), `compare` (base / champion /
candidate on the same rows), `generation` (answers from a local model or a server),
`answer_signals` (edit closeness, reproduced thumbs-down), `judge` (+ `judge_prompt.md`, its
template), `intervals` (the bootstrap), `answers` (all of it for one week, `AnswerConfig`),
`promotion` (the gate), `report`, `report_answers` and `plots` (the written report),
`config` (`EvalConfig`), `constants` and `formatting` (shared defaults, roles and numbers).
"""

from kto_pipeline.evaluate.answer_signals import EditSignal, ReproductionSignal, similarity
from kto_pipeline.evaluate.answers import (
    AnswerConfig,
    AnswerEvaluation,
    HeldoutPrompt,
    evaluate_answers,
    heldout_prompts,
)
from kto_pipeline.evaluate.compare import EvalResult, evaluate_candidates, same_model
from kto_pipeline.evaluate.config import EvalConfig
from kto_pipeline.evaluate.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BETA,
    DEFAULT_MAX_LENGTH,
    ROLE_BASE,
    ROLE_CANDIDATE,
    ROLE_CHAMPION,
    ROLES,
)
from kto_pipeline.evaluate.eval_set import EvalSet, prepare_eval_set, rotate_within_blocks, tokenize_example
from kto_pipeline.evaluate.generation import generate_local, generate_openai
from kto_pipeline.evaluate.intervals import Interval, bootstrap_mean
from kto_pipeline.evaluate.judge import (
    JUDGE_PROMPT_FILE,
    OpenAIJudge,
    PairwiseJudgement,
    TransformersJudge,
    judge_pairs,
    load_template,
    parse_verdict,
)
from kto_pipeline.evaluate.logps import ModelLogps, completion_logps, model_logps, sequence_logps
from kto_pipeline.evaluate.metrics import DEFAULT_WEIGHTS, KTOWeights, ModelMetrics, block_z0, compute_metrics
from kto_pipeline.evaluate.plots import plot_metric_bars, plot_reward_distributions
from kto_pipeline.evaluate.promotion import (
    MetricCheck,
    MetricRule,
    PromotionDecision,
    PromotionPolicy,
    SignalCheck,
    answer_checks,
    decide_promotion,
)
from kto_pipeline.evaluate.report import (
    METRICS_PLOT,
    REPORT_FILE,
    REWARDS_PLOT,
    ReportArtifacts,
    render_markdown,
    write_report,
)
from kto_pipeline.train.examples import DATA_FORMATS, choose_data_format, trl_example

__all__ = [
    "JUDGE_PROMPT_FILE",
    "AnswerConfig",
    "AnswerEvaluation",
    "EditSignal",
    "HeldoutPrompt",
    "Interval",
    "OpenAIJudge",
    "PairwiseJudgement",
    "ReproductionSignal",
    "SignalCheck",
    "TransformersJudge",
    "answer_checks",
    "bootstrap_mean",
    "evaluate_answers",
    "generate_local",
    "generate_openai",
    "heldout_prompts",
    "judge_pairs",
    "load_template",
    "parse_verdict",
    "similarity",
    "DATA_FORMATS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BETA",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_WEIGHTS",
    "EvalConfig",
    "EvalResult",
    "EvalSet",
    "KTOWeights",
    "METRICS_PLOT",
    "MetricCheck",
    "MetricRule",
    "ModelLogps",
    "ModelMetrics",
    "PromotionDecision",
    "PromotionPolicy",
    "REPORT_FILE",
    "REWARDS_PLOT",
    "ROLES",
    "ROLE_BASE",
    "ROLE_CANDIDATE",
    "ROLE_CHAMPION",
    "ReportArtifacts",
    "block_z0",
    "choose_data_format",
    "completion_logps",
    "compute_metrics",
    "decide_promotion",
    "evaluate_candidates",
    "model_logps",
    "plot_metric_bars",
    "plot_reward_distributions",
    "prepare_eval_set",
    "render_markdown",
    "rotate_within_blocks",
    "same_model",
    "sequence_logps",
    "tokenize_example",
    "trl_example",
    "write_report",
]
