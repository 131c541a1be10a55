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
log-probs. `decide_promotion` applies a `PromotionPolicy` (no watched metric may regress
beyond its tolerance against the champion, or the base in week 1, and training must not
have collapsed). `write_report` writes `eval_report.md` and two PNG plots, byte-identical for
identical inputs. No Dagster here: the asset layer wraps these functions.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer
from kto_pipeline.train.examples import DATA_FORMATS, choose_data_format, trl_example

DEFAULT_BETA = 0.1  # KTOConfig.beta
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_LENGTH = 1024  # KTOConfig.max_length

ROLE_BASE = "base"
ROLE_CHAMPION = "champion"
ROLE_CANDIDATE = "candidate"
ROLES = (ROLE_BASE, ROLE_CHAMPION, ROLE_CANDIDATE)

REPORT_FILE = "eval_report.md"
REWARDS_PLOT = "reward_distributions.png"
METRICS_PLOT = "metrics.png"

# A delta this close to the tolerance is a float artefact (0.59 − 0.60 = −0.0100000…09), not a regression.
_TOLERANCE_SLACK = 1e-12


class KTOWeights(NamedTuple):
    """KTOConfig's desirable_weight / undesirable_weight (λD, λU)."""

    desirable: float = 1.0
    undesirable: float = 1.0


DEFAULT_WEIGHTS = KTOWeights()


# ----------------------------------------------------------------------------------------------
# Rows → TRL examples → token ids


def _row_list(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)


def tokenize_example(example: Mapping[str, Any], tokenizer) -> tuple[list[int], list[int]]:
    """(prompt_ids, completion_ids) of a TRL example, as `KTOTrainer._prepare_dataset` builds them.

    TRL 1.16 (trl/trainer/kto_trainer.py, `_prepare_dataset`): plain-text completions get the
    EOS token appended as text unless they already end with it; the prompt and prompt +
    completion are tokenised separately with `trl.data_utils._tokenize` (chat template with
    `add_generation_prompt=True` for the conversational prompt, `tools=None`); the completion
    starts where the two token sequences diverge (`common_prefix_length`). We call the same
    helpers rather than re-implementing them.
    """
    from trl.data_utils import _tokenize, common_prefix_length, is_conversational

    prompt, completion = example["prompt"], example["completion"]
    if is_conversational(example):
        prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True, tools=None)["input_ids"]
        full_ids = _tokenize(tokenizer, prompt + completion, tools=None)["input_ids"]
    else:
        if not completion.endswith(tokenizer.eos_token):
            completion = completion + tokenizer.eos_token
        prompt_ids = _tokenize(tokenizer, prompt)["input_ids"]
        full_ids = _tokenize(tokenizer, prompt + completion)["input_ids"]
    prompt_len = common_prefix_length(prompt_ids, full_ids)
    return list(prompt_ids[:prompt_len]), list(full_ids[prompt_len:])


def rotate_within_blocks(items: Sequence[Any], block_size: int) -> list[Any]:
    """TRL's KL completions: (y1..yn) → (yn, y1, .., yn−1) inside each consecutive block."""
    out: list[Any] = []
    for start in range(0, len(items), block_size):
        block = list(items[start:start + block_size])
        out.extend(block[-1:] + block[:-1])
    return out


@dataclass(frozen=True)
class EvalSet:
    """Held-out rows tokenised once, in row order, with their KL (mismatched) completions."""

    row_ids: tuple[str, ...]
    labels: np.ndarray  # bool, one per kept row
    prompt_ids: tuple[tuple[int, ...], ...]
    completion_ids: tuple[tuple[int, ...], ...]
    kl_completion_ids: tuple[tuple[int, ...], ...]
    batch_size: int
    max_length: int | None
    pad_token_id: int
    n_dropped: int  # rows whose prompt alone fills max_length (TRL drops them too)
    data_format: str  # "conversational" or "plain"

    def __len__(self) -> int:
        return len(self.row_ids)

    def blocks(self) -> list[slice]:
        """The KL blocks, which are also the forward batches (as in TRL)."""
        return [slice(s, min(s + self.batch_size, len(self))) for s in range(0, len(self), self.batch_size)]


def prepare_eval_set(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    tokenizer,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    data_format: str = "auto",
) -> EvalSet:
    """Tokenise rows like TRL; drop those whose prompt alone fills `max_length` (TRL filters
    them before building KL pairs, so the rotation below sees the same rows it does)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = _row_list(rows)
    data_format = choose_data_format(rows, tokenizer, data_format)
    row_ids, labels, prompts, completions = [], [], [], []
    dropped = 0
    for i, row in enumerate(rows):
        example = trl_example(row, data_format)
        prompt_ids, completion_ids = tokenize_example(example, tokenizer)
        if max_length is not None and len(prompt_ids) >= max_length:
            dropped += 1
            continue
        rid = row.get("row_id")
        row_ids.append(str(i) if is_missing(rid) else str(rid))
        labels.append(example["label"])
        prompts.append(tuple(prompt_ids))
        completions.append(tuple(completion_ids))
    return EvalSet(
        row_ids=tuple(row_ids),
        labels=np.asarray(labels, dtype=bool),
        prompt_ids=tuple(prompts),
        completion_ids=tuple(completions),
        kl_completion_ids=tuple(rotate_within_blocks(completions, batch_size)),
        batch_size=batch_size,
        max_length=max_length,
        pad_token_id=int(tokenizer.pad_token_id),
        n_dropped=dropped,
        data_format=data_format,
    )


# ----------------------------------------------------------------------------------------------
# Sequence log-probs


@contextmanager
def _fused_lm_head(model) -> Iterator[None]:
    """TRL's fused LM head on `model` for the duration (its forward is restored afterwards).

    Like KTOTrainer, the head goes on the PEFT model's base model; it projects only the
    completion positions, so (batch, length, vocab) logits are never materialised.
    """
    from trl.trainer.utils import add_fused_lm_head

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    had_own_forward = "forward" in vars(target)
    previous = vars(target).get("forward")
    add_fused_lm_head(target)
    try:
        yield
    finally:
        if had_own_forward:
            target.forward = previous
        else:
            del target.forward


def _model_device(model):
    return next(model.parameters()).device


def completion_logps(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Summed completion-token log-probs per sequence, in input order (float64).

    Batches of `batch_size` consecutive sequences are padded and truncated on the right by
    TRL's own `DataCollatorForUnpairedPreference`, and scored as `KTOTrainer` scores them:
    labels = input ids outside the completion masked to −100, the fused LM head's per-token
    log-probs summed (no length normalisation). Runs on the model's device, under
    `torch.inference_mode`, with the model in eval mode (its mode is restored afterwards).
    """
    import torch
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids differ in length")
    collator = DataCollatorForUnpairedPreference(pad_token_id=pad_token_id, max_length=max_length)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with _fused_lm_head(model), torch.inference_mode():
            for start in range(0, len(prompt_ids), batch_size):
                examples = [
                    {"prompt_ids": list(p), "completion_ids": list(c), "label": True}
                    for p, c in zip(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size])
                ]
                batch = collator(examples)
                input_ids = batch["input_ids"].to(device)
                labels = input_ids.masked_fill(batch["completion_mask"].to(device) == 0, -100)
                outputs = model(
                    input_ids=input_ids,
                    attention_mask=batch["attention_mask"].to(device),
                    labels=labels,
                    fused_lm_head=True,
                    use_cache=False,
                )
                # As TRL: prompt-learning PEFT prepends virtual tokens, keep the real positions.
                per_token = outputs.log_probs[:, -(input_ids.size(1) - 1):]
                out.append(per_token.float().sum(-1).cpu().numpy().astype(np.float64))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


def sequence_logps(
    model,
    tokenizer,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    data_format: str = "auto",
) -> np.ndarray:
    """Summed completion log-probs of `rows` (contract rows) under `model`, one per kept row.

    Rows whose prompt alone fills `max_length` are dropped, as TRL drops them.
    """
    eval_set = prepare_eval_set(rows, tokenizer, batch_size=batch_size, max_length=max_length, data_format=data_format)
    return completion_logps(
        model, eval_set.prompt_ids, eval_set.completion_ids,
        pad_token_id=eval_set.pad_token_id, batch_size=batch_size, max_length=max_length,
    )


@dataclass(frozen=True)
class ModelLogps:
    """One model's summed log-probs on the matched sequences and on the KL (mismatched) ones."""

    matched: np.ndarray
    kl: np.ndarray


def model_logps(model, eval_set: EvalSet) -> ModelLogps:
    kwargs = dict(pad_token_id=eval_set.pad_token_id, batch_size=eval_set.batch_size, max_length=eval_set.max_length)
    return ModelLogps(
        matched=completion_logps(model, eval_set.prompt_ids, eval_set.completion_ids, **kwargs),
        kl=completion_logps(model, eval_set.prompt_ids, eval_set.kl_completion_ids, **kwargs),
    )


# ----------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class ModelMetrics:
    """KTO metrics of one model against the base (reference), over the held-out rows.

    Rewards are β·log-ratios; `kl` is the mean over blocks of z0 in log-ratio units (TRL's
    logged `kl`); `loss` is TRL's weighted KTO loss averaged over rows (TRL's `eval_loss`).
    """

    role: str
    ref: str
    n_rows: int
    n_desirable: int
    n_undesirable: int
    reward_accuracy: float
    desirable_accuracy: float
    undesirable_accuracy: float
    reward_desirable_mean: float
    reward_undesirable_mean: float
    margin: float
    kl: float
    loss: float
    logps_desirable_mean: float
    logps_undesirable_mean: float
    rewards: tuple[float, ...] = field(default=(), repr=False)
    labels: tuple[bool, ...] = field(default=(), repr=False)

    SCALARS = (
        "reward_accuracy", "desirable_accuracy", "undesirable_accuracy",
        "reward_desirable_mean", "reward_undesirable_mean", "margin", "kl", "loss",
        "logps_desirable_mean", "logps_undesirable_mean", "n_rows", "n_desirable", "n_undesirable",
    )

    def scalars(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.SCALARS}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def block_z0(policy_kl: np.ndarray, ref_kl: np.ndarray, blocks: Sequence[slice]) -> np.ndarray:
    """z0 per row: max(0, mean log-ratio over its block's mismatched pairs), detached as in TRL."""
    z0 = np.zeros(len(policy_kl), dtype=np.float64)
    for block in blocks:
        z0[block] = max(0.0, float(np.mean(policy_kl[block] - ref_kl[block])))
    return z0


def compute_metrics(
    policy: ModelLogps,
    reference: ModelLogps,
    labels: np.ndarray,
    blocks: Sequence[slice],
    *,
    beta: float = DEFAULT_BETA,
    weights: KTOWeights = DEFAULT_WEIGHTS,
    role: str = ROLE_CANDIDATE,
    ref: str = "",
) -> ModelMetrics:
    """The KTO metrics of `policy` against `reference` (TRL's `_compute_loss`, per block)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    weights = KTOWeights(*weights)
    labels = np.asarray(labels, dtype=bool)
    logratio = policy.matched - reference.matched
    z0 = block_z0(policy.kl, reference.kl, blocks)
    # Compare log-ratio with z0 rather than β·logratio with β·z0: same order (β > 0) without
    # rounding creating or breaking ties, so the reference's all-zero rewards tie exactly.
    diff = logratio - z0
    desirable, undesirable = labels, ~labels
    correct = np.where(desirable, np.sign(diff), -np.sign(diff))  # +1 right, −1 wrong, 0 tie
    hit = (correct + 1.0) / 2.0  # ties count half
    losses = np.where(
        desirable,
        weights.desirable * (1.0 - _sigmoid(beta * diff)),
        weights.undesirable * (1.0 - _sigmoid(-beta * diff)),
    )
    rewards = beta * logratio
    reward_d, reward_u = _mean(rewards[desirable]), _mean(rewards[undesirable])
    return ModelMetrics(
        role=role,
        ref=ref,
        n_rows=int(labels.size),
        n_desirable=int(desirable.sum()),
        n_undesirable=int(undesirable.sum()),
        reward_accuracy=_mean(hit),
        desirable_accuracy=_mean(hit[desirable]),
        undesirable_accuracy=_mean(hit[undesirable]),
        reward_desirable_mean=reward_d,
        reward_undesirable_mean=reward_u,
        margin=reward_d - reward_u,
        kl=_mean(np.array([z0[b.start] for b in blocks if b.stop > b.start])),
        loss=_mean(losses),
        logps_desirable_mean=_mean(policy.matched[desirable]),
        logps_undesirable_mean=_mean(policy.matched[undesirable]),
        rewards=tuple(float(r) for r in rewards),
        labels=tuple(bool(x) for x in labels),
    )


# ----------------------------------------------------------------------------------------------
# Base / champion / candidate


@dataclass
class EvalResult:
    """Metrics of base, champion (absent in week 1) and candidate on the same held-out rows.

    `external` holds metrics computed elsewhere (e.g. a simulator's oracle accuracy), per
    role; the promotion policy and the report read them like the built-in ones.
    """

    models: dict[str, ModelMetrics]
    refs: dict[str, str]
    champion_is_base: bool
    n_rows: int
    n_desirable: int
    n_undesirable: int
    n_dropped: int
    beta: float
    weights: KTOWeights
    batch_size: int
    max_length: int | None
    data_format: str = "conversational"
    week: str | None = None
    external: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_external(self, role: str, metrics: Mapping[str, float]) -> None:
        self.external.setdefault(role, {}).update({k: float(v) for k, v in metrics.items()})

    def metric(self, role: str, name: str) -> float | None:
        if role in self.external and name in self.external[role]:
            return self.external[role][name]
        model = self.models.get(role)
        if model is not None and name in ModelMetrics.SCALARS:
            return float(getattr(model, name))
        return None

    @property
    def baseline_role(self) -> str:
        """Who the candidate must not regress against: the champion, else the base."""
        return ROLE_CHAMPION if ROLE_CHAMPION in self.models else ROLE_BASE

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (for asset metadata)."""
        return {
            "week": self.week,
            "refs": dict(self.refs),
            "champion_is_base": self.champion_is_base,
            "data": {"n_rows": self.n_rows, "n_desirable": self.n_desirable,
                     "n_undesirable": self.n_undesirable, "n_dropped": self.n_dropped},
            "settings": {"beta": self.beta, "desirable_weight": self.weights.desirable,
                         "undesirable_weight": self.weights.undesirable,
                         "batch_size": self.batch_size, "max_length": self.max_length,
                         "data_format": self.data_format},
            "models": {role: m.scalars() for role, m in self.models.items()},
            "external": {role: dict(v) for role, v in self.external.items()},
        }


def same_model(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two model references name the same model (same string or same folder)."""
    if a is None or b is None:
        return False
    if str(a) == str(b):
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _check_same_tokenizer(base_tok, other_ref: str | Path) -> None:
    """Rewards compare log-probs of the same token ids, so every model must share the base's tokenizer."""
    other = load_tokenizer(other_ref)
    if other.get_vocab() != base_tok.get_vocab() or other.eos_token != base_tok.eos_token \
            or getattr(other, "chat_template", None) != getattr(base_tok, "chat_template", None):
        raise ValueError(f"{other_ref} does not use the base model's tokenizer and chat template")


def _release(model) -> None:
    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate_candidates(
    eval_rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    candidate: str | Path,
    champion: str | Path | None,
    base: str | Path,
    beta: float = DEFAULT_BETA,
    weights: KTOWeights | tuple[float, float] = DEFAULT_WEIGHTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    device: str | None = None,
    dtype: Any = None,
    week: str | None = None,
    data_format: str = "auto",
) -> EvalResult:
    """Score base, champion and candidate on `eval_rows`, rewards against the base.

    Use the training run's beta, weights, per-device batch size and max_length so the numbers
    match its logged eval metrics (and its data_format, if it did not use "auto"). Models are
    loaded one at a time (bounded memory) and a model named twice (champion = base in week 1)
    is scored once.
    """
    weights = KTOWeights(*weights)
    tokenizer = load_tokenizer(base)
    eval_set = prepare_eval_set(eval_rows, tokenizer, batch_size=batch_size, max_length=max_length,
                                data_format=data_format)
    if len(eval_set) == 0:
        raise ValueError(f"no held-out rows to evaluate ({eval_set.n_dropped} dropped for max_length={max_length})")

    refs = {ROLE_BASE: str(base)}
    if champion is not None:
        refs[ROLE_CHAMPION] = str(champion)
    refs[ROLE_CANDIDATE] = str(candidate)
    for role in (ROLE_CHAMPION, ROLE_CANDIDATE):
        if role in refs and not same_model(refs[role], base):
            _check_same_tokenizer(tokenizer, refs[role])

    computed: list[tuple[str, ModelLogps]] = []  # (ref, logps), so aliases are scored once

    def logps_of(ref: str) -> ModelLogps:
        for seen, logps in computed:
            if same_model(seen, ref):
                return logps
        model = load_causal_lm(ref, device=device, dtype=dtype)
        try:
            logps = model_logps(model, eval_set)
        finally:
            _release(model)
        computed.append((ref, logps))
        return logps

    base_logps = logps_of(refs[ROLE_BASE])
    blocks = eval_set.blocks()
    models = {
        role: compute_metrics(logps_of(ref), base_logps, eval_set.labels, blocks,
                              beta=beta, weights=weights, role=role, ref=ref)
        for role, ref in refs.items()
    }
    return EvalResult(
        models=models,
        refs=refs,
        champion_is_base=champion is not None and same_model(champion, base),
        n_rows=len(eval_set),
        n_desirable=int(eval_set.labels.sum()),
        n_undesirable=int((~eval_set.labels).sum()),
        n_dropped=eval_set.n_dropped,
        beta=beta,
        weights=weights,
        batch_size=batch_size,
        max_length=max_length,
        data_format=eval_set.data_format,
        week=week,
    )


# ----------------------------------------------------------------------------------------------
# Promotion


@dataclass(frozen=True)
class MetricRule:
    """A watched metric: the candidate may be worse than the baseline by at most `tolerance`
    (absolute). `required=False` skips the rule when the metric is missing instead of failing."""

    name: str
    tolerance: float = 0.01
    higher_is_better: bool = True
    required: bool = True


@dataclass(frozen=True)
class PromotionPolicy:
    """Promote iff no watched metric regresses beyond its tolerance and training did not collapse.

    `metric` is the main metric (any `ModelMetrics` scalar, or an external metric name);
    `extra` adds more rules, e.g. `MetricRule("loss", 0.02, higher_is_better=False)` or
    `MetricRule("oracle_accuracy", 0.02)` for a metric the caller adds to the result.
    """

    metric: str = "reward_accuracy"
    tolerance: float = 0.01
    higher_is_better: bool = True
    extra: tuple[MetricRule, ...] = ()

    def rules(self) -> tuple[MetricRule, ...]:
        return (MetricRule(self.metric, self.tolerance, self.higher_is_better), *self.extra)


@dataclass(frozen=True)
class MetricCheck:
    name: str
    value: float | None
    baseline_value: float | None
    delta: float | None
    tolerance: float
    higher_is_better: bool
    passed: bool
    skipped: bool = False

    def describe(self, baseline_role: str) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        if self.value is None or self.baseline_value is None:
            missing = "candidate" if self.value is None else baseline_role
            verdict = "skipped (optional)" if self.skipped else "FAIL"
            return f"{self.name}: missing for the {missing}: {verdict}"
        return (
            f"{self.name}: {_fmt(self.value)} vs {baseline_role} {_fmt(self.baseline_value)} "
            f"(delta {_fmt(self.delta, signed=True)}, tolerance {_fmt(self.tolerance)}, {direction}): "
            f"{'pass' if self.passed else 'FAIL'}"
        )


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    baseline_role: str
    checks: tuple[MetricCheck, ...]
    collapsed: bool
    collapse_reason: str | None

    @property
    def reasons(self) -> list[str]:
        lines = [check.describe(self.baseline_role) for check in self.checks]
        if self.collapsed:
            lines.append(f"training collapsed: {self.collapse_reason or 'no reason given'}: FAIL")
        else:
            lines.append("training did not collapse: pass")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "baseline": self.baseline_role,
            "collapsed": self.collapsed,
            "collapse_reason": self.collapse_reason,
            "checks": [asdict(c) for c in self.checks],
            "reasons": self.reasons,
        }


def _check_rule(rule: MetricRule, value: float | None, baseline: float | None) -> MetricCheck:
    if value is None or baseline is None:
        return MetricCheck(rule.name, value, baseline, None, rule.tolerance, rule.higher_is_better,
                           passed=not rule.required, skipped=not rule.required)
    delta = value - baseline
    if math.isnan(delta):
        passed = False
    elif rule.higher_is_better:
        passed = delta >= -(rule.tolerance + _TOLERANCE_SLACK)
    else:
        passed = delta <= rule.tolerance + _TOLERANCE_SLACK
    return MetricCheck(rule.name, value, baseline, delta, rule.tolerance, rule.higher_is_better, passed)


def decide_promotion(
    result: EvalResult,
    policy: PromotionPolicy | None = None,
    *,
    collapsed: bool = False,
    collapse_reason: str | None = None,
    external: Mapping[str, Mapping[str, float]] | None = None,
) -> PromotionDecision:
    """Promote the candidate iff no watched metric regresses beyond its tolerance against the
    champion (the base when there is none) and training did not collapse.

    `external` ({role: {metric: value}}, e.g. a simulator's oracle accuracy) overlays
    `result.external` for this decision only; `result` is not modified (add them with
    `result.add_external` to have the report table show them too).
    """
    policy = policy or PromotionPolicy()
    baseline = result.baseline_role

    def value(role: str, name: str) -> float | None:
        overlay = (external or {}).get(role, {})
        return float(overlay[name]) if name in overlay else result.metric(role, name)

    checks = tuple(
        _check_rule(rule, value(ROLE_CANDIDATE, rule.name), value(baseline, rule.name))
        for rule in policy.rules()
    )
    promote = all(c.passed for c in checks) and not collapsed
    return PromotionDecision(promote, baseline, checks, collapsed, collapse_reason if collapsed else None)


# ----------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class ReportArtifacts:
    markdown: str
    markdown_path: Path
    plots: dict[str, Path]  # "rewards", "metrics" → PNG paths


_TABLE_COLUMNS = (
    ("reward_accuracy", "accuracy"),
    ("desirable_accuracy", "acc. desirable"),
    ("undesirable_accuracy", "acc. undesirable"),
    ("reward_desirable_mean", "reward desirable"),
    ("reward_undesirable_mean", "reward undesirable"),
    ("margin", "margin"),
    ("kl", "KL (z0)"),
    ("loss", "KTO loss"),
    ("logps_desirable_mean", "logp desirable"),
    ("logps_undesirable_mean", "logp undesirable"),
)


def _fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value) + 0.0  # no "-0.0000"
    if abs(value) < 0.5 * 10 ** -digits:
        value = 0.0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _role_label(result: EvalResult, role: str) -> str:
    if role == ROLE_CHAMPION and result.champion_is_base:
        return "champion (= base)"
    return role


def _external_names(result: EvalResult) -> list[str]:
    return sorted({name for metrics in result.external.values() for name in metrics})


def render_markdown(
    result: EvalResult,
    decision: PromotionDecision,
    plots: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
) -> str:
    """The report text; `plots` maps plot keys to paths relative to the report."""
    week = result.week or "unknown week"
    lines = [f"# {title or f'KTO evaluation: week {week}'}", ""]
    verdict = "PROMOTE" if decision.promote else "DO NOT PROMOTE"
    lines += [
        f"**Decision: {verdict}** the candidate (compared against the {decision.baseline_role}).", "",
        *[f"- {'✅' if ok else '❌'} {_md_cell(text)}" for ok, text in _decision_lines(decision)],
        "",
        "## Metrics",
        "",
        f"Rewards are β·(log π − log π_base) with β = {result.beta:g}, so the base scores 0 reward and "
        f"0.5 accuracy by construction. z0 (KL) is estimated per block of {result.batch_size} rows from "
        f"TRL's mismatched pairs and clamped at 0; the KTO loss uses λD = {result.weights.desirable:g}, "
        f"λU = {result.weights.undesirable:g}; max_length = {result.max_length}; {result.data_format} rows.",
        "",
    ]
    ext = _external_names(result)
    header = ["model", "reference", *[label for _, label in _TABLE_COLUMNS], *ext]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for role in ROLES:
        if role not in result.models:
            continue
        m = result.models[role]
        cells = [_role_label(result, role), f"`{_md_cell(m.ref)}`"]
        cells += [_fmt(getattr(m, name)) for name, _ in _TABLE_COLUMNS]
        cells += [_fmt(result.external.get(role, {}).get(name)) for name in ext]
        lines.append("| " + " | ".join(cells) + " |")
    if ROLE_CHAMPION not in result.models:
        lines += ["", "No champion yet: the candidate is compared against the base."]
    lines += [
        "",
        "## Data",
        "",
        "| held-out rows | count |",
        "|---|---|",
        f"| desirable | {result.n_desirable} |",
        f"| undesirable | {result.n_undesirable} |",
        f"| total evaluated | {result.n_rows} |",
        f"| dropped (prompt ≥ max_length tokens) | {result.n_dropped} |",
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        captions = {"rewards": "Reward distributions per model and class", "metrics": "Main metrics per model"}
        for key, rel in plots.items():
            lines += [f"![{captions.get(key, key)}]({rel})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _decision_lines(decision: PromotionDecision) -> list[tuple[bool, str]]:
    out = [(c.passed, text) for c, text in zip(decision.checks, decision.reasons)]
    out.append((not decision.collapsed, decision.reasons[-1]))
    return out


_PNG_METADATA = {"Software": None}  # no matplotlib version string; Agg writes no timestamp
_ROLE_COLOURS = {ROLE_BASE: "#7f7f7f", ROLE_CHAMPION: "#1f77b4", ROLE_CANDIDATE: "#ff7f0e"}


def _new_figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot state, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> Path:
    fig.savefig(path, format="png", metadata=_PNG_METADATA)
    return path


def plot_reward_distributions(result: EvalResult, path: str | Path) -> Path:
    """Box plots of per-row rewards, per model, one panel per class."""
    roles = [r for r in ROLES if r in result.models]
    fig = _new_figure(9, 4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (label, want) in zip(axes, (("desirable", True), ("undesirable", False))):
        data = []
        for role in roles:
            m = result.models[role]
            data.append([r for r, y in zip(m.rewards, m.labels) if y == want] or [float("nan")])
        boxes = ax.boxplot(data, showmeans=True, patch_artist=True)
        for patch, role in zip(boxes["boxes"], roles):
            patch.set_facecolor(_ROLE_COLOURS[role])
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(roles) + 1), [_role_label(result, r) for r in roles])
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        ax.set_title(f"{label} rows (n={result.n_desirable if want else result.n_undesirable})")
    axes[0].set_ylabel(f"reward β·log(π/π_base), β={result.beta:g}")
    fig.suptitle(f"Reward distributions, week {result.week or 'unknown'}")
    fig.tight_layout()
    return _save_png(fig, Path(path))


def plot_metric_bars(result: EvalResult, path: str | Path) -> Path:
    """Grouped bars of the main metrics per model: accuracies, rewards, loss and KL."""
    roles = [r for r in ROLES if r in result.models]
    panels = (
        ("accuracy", ("reward_accuracy", "desirable_accuracy", "undesirable_accuracy"), ("all", "desirable", "undesirable")),
        ("mean reward", ("reward_desirable_mean", "reward_undesirable_mean", "margin"), ("desirable", "undesirable", "margin")),
        ("loss / KL", ("loss", "kl"), ("KTO loss", "KL (z0)")),
    )
    fig = _new_figure(12, 4)
    axes = fig.subplots(1, len(panels))
    width = 0.8 / len(roles)
    for ax, (title, names, labels) in zip(axes, panels):
        x = np.arange(len(names))
        for i, role in enumerate(roles):
            values = [getattr(result.models[role], n) for n in names]
            ax.bar(x + (i - (len(roles) - 1) / 2) * width, values, width,
                   label=_role_label(result, role), color=_ROLE_COLOURS[role])
        ax.set_xticks(x, labels)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(title)
    axes[0].axhline(0.5, color="black", linewidth=0.8, linestyle=":")  # the reference's accuracy
    axes[0].set_ylim(0.0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(roles), frameon=False)
    fig.suptitle(f"Held-out metrics, week {result.week or 'unknown'}")
    fig.tight_layout(rect=(0.0, 0.07, 1.0, 1.0))  # room for the legend below the panels
    return _save_png(fig, Path(path))


def write_report(
    result: EvalResult,
    decision: PromotionDecision,
    folder: str | Path,
    *,
    title: str | None = None,
) -> ReportArtifacts:
    """Write `eval_report.md` and its PNG plots into `folder`; return the text and paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = {
        "rewards": plot_reward_distributions(result, folder / REWARDS_PLOT),
        "metrics": plot_metric_bars(result, folder / METRICS_PLOT),
    }
    markdown = render_markdown(result, decision, {k: p.name for k, p in plots.items()}, title=title)
    path = folder / REPORT_FILE
    path.write_text(markdown, encoding="utf-8")
    return ReportArtifacts(markdown=markdown, markdown_path=path, plots=plots)


__all__ = [
    "DATA_FORMATS", "DEFAULT_BATCH_SIZE", "DEFAULT_BETA", "DEFAULT_MAX_LENGTH", "EvalResult", "EvalSet", "KTOWeights",
    "MetricCheck", "MetricRule", "ModelLogps", "ModelMetrics", "PromotionDecision", "PromotionPolicy",
    "ReportArtifacts", "ROLES", "block_z0", "choose_data_format", "completion_logps", "compute_metrics", "decide_promotion",
    "evaluate_candidates", "model_logps", "plot_metric_bars", "plot_reward_distributions",
    "prepare_eval_set", "render_markdown", "rotate_within_blocks", "same_model",
    "sequence_logps", "tokenize_example", "trl_example", "write_report",
]
