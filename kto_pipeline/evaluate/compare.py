"""Base, champion and candidate scored on the same held-out rows, rewards always against the base."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kto_pipeline.evaluate.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BETA,
    DEFAULT_MAX_LENGTH,
    ROLE_BASE,
    ROLE_CANDIDATE,
    ROLE_CHAMPION,
)
from kto_pipeline.evaluate.eval_set import prepare_eval_set
from kto_pipeline.evaluate.logps import ModelLogps, model_logps
from kto_pipeline.evaluate.metrics import DEFAULT_WEIGHTS, KTOWeights, ModelMetrics, compute_metrics
from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer


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
            "data": {
                "n_rows": self.n_rows,
                "n_desirable": self.n_desirable,
                "n_undesirable": self.n_undesirable,
                "n_dropped": self.n_dropped,
            },
            "settings": {
                "beta": self.beta,
                "desirable_weight": self.weights.desirable,
                "undesirable_weight": self.weights.undesirable,
                "batch_size": self.batch_size,
                "max_length": self.max_length,
                "data_format": self.data_format,
            },
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
    if (
        other.get_vocab() != base_tok.get_vocab()
        or other.eos_token != base_tok.eos_token
        or getattr(other, "chat_template", None) != getattr(base_tok, "chat_template", None)
    ):
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
    eval_set = prepare_eval_set(
        eval_rows, tokenizer, batch_size=batch_size, max_length=max_length, data_format=data_format
    )
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
        role: compute_metrics(
            logps_of(ref), base_logps, eval_set.labels, blocks, beta=beta, weights=weights, role=role, ref=ref
        )
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
