"""Held-out KTO evaluation: log-probs, metrics, TRL parity, promotion and the report.

Models are tiny random Llamas built once per module: the base (seed 0), a planted "better"
model (the base trained a few plain-torch steps to raise the log-probs of desirable and lower
those of undesirable eval completions), a planted "worse" one (the opposite), and a LoRA
checkpoint with random nonzero B matrices.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from kto_pipeline import evaluate as ev
from kto_pipeline.devtools.tiny_models import TinyModelSpec, build_tiny_causal_lm
from kto_pipeline.evaluate import compare
from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer
from kto_pipeline.models.manifest import write_manifest

BETA = 0.1
BATCH = 4

PLAIN = [
    ("What is the capital of France?", " The capital of France is Paris.", True),
    ("How do I reset my password?", " I cannot help with that.", False),
    ("Write a short poem about the sea.", " The sea is wide and blue and calm at night.", True),
    ("What is 23+45?", " 23+45=110", False),
    ("Explain how a hash map works.", " A hash map stores keys: d['a'] returns 1.", True),
    ("Summarise this email for me.", " No.", False),
    ("What is 17+38?", " 17+38=55", True),
]
CHAT = [
    (
        [{"role": "user", "content": "How do I reset my password?"}],
        "Open the settings page and choose reset password.",
        True,
    ),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 99+11?"}], "99+11=0", False),
    (
        [{"role": "user", "content": "Draft a polite reply about the refund."}],
        "Thank you, the refund is on its way.",
        True,
    ),
    ([{"role": "user", "content": "What is the capital of France?"}], "The capital of France is 5.", False),
    ([{"role": "user", "content": "Write a short poem."}], "The sea is calm at night.", True),
    ([{"role": "user", "content": "Please identify the quality score."}], "##Quality: 6 6 6 6", False),
    ([{"role": "user", "content": "What is 0+1?"}], "0+1=1", True),
]


def _rows() -> list[dict]:
    """14 contract rows, plain and chat interleaved: blocks of 4, 4, 4 and a partial 2."""
    rows = []
    for i, ((p, c, y), (m, cc, yy)) in enumerate(zip(PLAIN, CHAT)):
        rows.append({"row_id": f"p{i}", "prompt": p, "prompt_messages": None, "completion": c, "label": y})
        rows.append(
            {
                "row_id": f"c{i}",
                "prompt": "\n".join(f"{x['role']}: {x['content']}" for x in m),
                "prompt_messages": json.dumps(m),
                "completion": cc,
                "label": yy,
            }
        )
    return rows


def _hand_logps(model, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> torch.Tensor:
    """Full logits → log-softmax → gather each completion token's log-prob → sum (one by one)."""
    out = []
    for p, c in zip(prompt_ids, completion_ids):
        ids = torch.tensor([list(p) + list(c)])
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
        positions = torch.arange(len(p), len(p) + len(c))
        out.append(logp[positions - 1, ids[0, positions]].sum())
    return torch.stack(out)


def _batched_logps(model, prompt_ids, completion_ids) -> torch.Tensor:
    """Differentiable summed completion log-probs, all sequences in one right-padded batch."""
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    completion = torch.tensor(
        [[0] * len(p) + [1] * len(c) + [0] * (width - len(p) - len(c)) for p, c in zip(prompt_ids, completion_ids)]
    )
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=attention).logits.float(), dim=-1)
    token_logp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    return (token_logp * completion[:, 1:]).sum(-1)


def _nudge(base_path, out_path, rows, direction: float, steps: int = 12):
    """Plain-torch steps raising direction·(logp desirable − logp undesirable) on `rows`."""
    tokenizer = load_tokenizer(base_path)
    eval_set = ev.prepare_eval_set(rows, tokenizer, batch_size=BATCH)
    sign = torch.tensor([1.0 if y else -1.0 for y in eval_set.labels]) * direction
    torch.manual_seed(0)
    model = load_causal_lm(base_path, trainable=True)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = -(sign * _batched_logps(model, eval_set.prompt_ids, eval_set.completion_ids)).mean()
        loss.backward()
        opt.step()
    model.save_pretrained(out_path)
    tokenizer.save_pretrained(out_path)
    return out_path


def _lora_checkpoint(base_path, out_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(
        load_causal_lm(base_path),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # PEFT inits B to zero (adapter = identity): make it matter
                param.normal_(0.0, 0.3)
    model.save_pretrained(out_path)
    write_manifest(out_path, {"kind": "lora", "base_model": str(base_path), "init_from": None, "weeks": ["2026-W02"]})
    return out_path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # On 2 shared, busy cores, intra-op threads spin against each other: one thread was ~25x
    # faster for these tiny models.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_models")
    rows = _rows()
    base = build_tiny_causal_lm(root / "base", TinyModelSpec(seed=0))
    return {
        "base": base,
        "better": _nudge(base, root / "better", rows, +1.0),
        "worse": _nudge(base, root / "worse", rows, -1.0),
        "lora": _lora_checkpoint(base, root / "lora"),
    }


def _evaluate(models, candidate, champion, **kw):
    return ev.evaluate_candidates(
        _rows(),
        candidate=models[candidate],
        champion=None if champion is None else models[champion],
        base=models["base"],
        beta=BETA,
        batch_size=BATCH,
        week="2026-W02",
        **kw,
    )


@pytest.fixture(scope="module")
def better_vs_base(models):
    return _evaluate(models, "better", None)


@pytest.fixture(scope="module")
def worse_vs_better(models):
    return _evaluate(models, "worse", "better")


# ----------------------------------------------------------------------------------------------
# Log-probs and tokenisation


def test_sequence_logp_equals_hand_computation(models):
    tokenizer = load_tokenizer(models["base"])
    model = load_causal_lm(models["base"])
    plain, chat = _rows()[0], _rows()[1]

    # Plain row: TRL appends EOS to the completion text.
    p_ids = tokenizer(plain["prompt"])["input_ids"]
    full = tokenizer(plain["prompt"] + plain["completion"] + tokenizer.eos_token)["input_ids"]
    assert full[: len(p_ids)] == p_ids and full[-1] == tokenizer.eos_token_id
    # Chat row: generation prompt for the prompt, the completion is the assistant message.
    messages = json.loads(chat["prompt_messages"])
    p_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    f_text = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": chat["completion"]}], tokenize=False
    )
    assert f_text == p_text + chat["completion"] + tokenizer.eos_token + "\n"
    cp_ids = tokenizer(p_text, add_special_tokens=False)["input_ids"]
    cf_ids = tokenizer(f_text, add_special_tokens=False)["input_ids"]
    assert cf_ids[: len(cp_ids)] == cp_ids

    with torch.no_grad():
        expected = _hand_logps(model, [p_ids, cp_ids], [full[len(p_ids) :], cf_ids[len(cp_ids) :]]).numpy()
    got = np.concatenate(
        [ev.sequence_logps(model, tokenizer, [plain], data_format="plain"), ev.sequence_logps(model, tokenizer, [chat])]
    )  # "auto": it has messages
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.all(got < 0)
    assert "forward" not in vars(model)  # TRL's fused head is removed again


def test_batching_and_padding_do_not_change_logps(models):
    tokenizer = load_tokenizer(models["base"])
    model = load_causal_lm(models["base"])
    rows = _rows()
    one_by_one = ev.sequence_logps(model, tokenizer, rows, batch_size=1)
    batched = ev.sequence_logps(model, tokenizer, rows, batch_size=5)
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-4)
    assert np.array_equal(batched, ev.sequence_logps(model, tokenizer, rows, batch_size=5))  # deterministic


def test_one_data_format_per_eval_set_like_training(models):
    tokenizer = load_tokenizer(models["base"])
    rows = _rows()  # plain and chat rows mixed
    assert ev.choose_data_format(rows, tokenizer) == "conversational"
    eval_set = ev.prepare_eval_set(rows, tokenizer, batch_size=BATCH)
    assert eval_set.data_format == "conversational"
    # A row without messages becomes one user message.
    as_user = ev.trl_example(rows[0], "conversational")
    assert as_user["prompt"] == [{"role": "user", "content": rows[0]["prompt"]}]
    assert as_user["completion"] == [{"role": "assistant", "content": rows[0]["completion"]}]
    assert list(eval_set.prompt_ids[0]) == ev.tokenize_example(as_user, tokenizer)[0]
    # Plain: the rendered prompt text, also for chat rows; chosen when no row has messages.
    assert ev.trl_example(rows[1], "plain")["prompt"] == rows[1]["prompt"]
    assert ev.choose_data_format([r for r in rows if r["prompt_messages"] is None], tokenizer) == "plain"
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    assert ev.choose_data_format(rows, no_template) == "plain"
    with pytest.raises(ValueError, match="chat template"):
        ev.choose_data_format(rows, no_template, "conversational")


def test_rotation_is_trls_plus_one_within_blocks():
    assert ev.rotate_within_blocks([1, 2, 3, 4, 5], 2) == [2, 1, 4, 3, 5]
    assert ev.rotate_within_blocks([1, 2, 3, 4, 5, 6, 7], 3) == [3, 1, 2, 6, 4, 5, 7]


def test_tokenisation_and_metrics_match_trl_kto_trainer(models, tmp_path):
    """Same ids (EOS, chat template, right truncation, dropped long prompts, KL pairs) and
    the same eval loss / kl / rewards as TRL's own KTOTrainer.evaluate() on the same rows."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    max_length, weights = 24, ev.KTOWeights(1.3, 0.8)
    long_prompt = {
        "row_id": "long",
        "prompt": "Please identify the complexity score " * 6,
        "prompt_messages": None,
        "completion": " 1",
        "label": True,
    }
    rows = _rows()
    splits = {
        "plain": [r for r in rows if r["prompt_messages"] is None][:3]
        + [long_prompt]
        + [r for r in rows if r["prompt_messages"] is None][3:],
        "chat": [r for r in rows if r["prompt_messages"] is not None],
    }
    tokenizer = load_tokenizer(models["base"])
    args = KTOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        beta=BETA,
        desirable_weight=weights.desirable,
        undesirable_weight=weights.undesirable,
        max_length=max_length,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        dataloader_num_workers=0,
    )
    formats = {k: ev.choose_data_format(v, tokenizer) for k, v in splits.items()}
    assert formats == {"plain": "plain", "chat": "conversational"}
    datasets = {k: Dataset.from_list([ev.trl_example(r, formats[k]) for r in v]) for k, v in splits.items()}
    trainer = KTOTrainer(
        model=str(models["better"]),
        ref_model=load_causal_lm(models["base"]),
        args=args,
        train_dataset=datasets["plain"],
        eval_dataset=datasets,
        processing_class=tokenizer,
    )
    trainer.evaluate()
    # One log entry per split: its `eval_<split>_loss` next to TRL's own `eval_kl`, `eval_rewards/*`.
    logged = {name: next(e for e in trainer.state.log_history if f"eval_{name}_loss" in e) for name in splits}

    better, base = load_causal_lm(models["better"]), load_causal_lm(models["base"])
    truncated = 0
    for name, split_rows in splits.items():
        eval_set = ev.prepare_eval_set(split_rows, tokenizer, batch_size=BATCH, max_length=max_length)
        trl_set = trainer.eval_dataset[name]
        assert [list(x) for x in eval_set.prompt_ids] == trl_set["prompt_ids"]
        assert [list(x) for x in eval_set.completion_ids] == trl_set["completion_ids"]
        assert [list(x) for x in eval_set.kl_completion_ids] == trl_set["KL_completion_ids"]
        assert eval_set.n_dropped == len(split_rows) - len(trl_set) and (name != "plain" or eval_set.n_dropped >= 1)
        truncated += sum(len(p) + len(c) > max_length for p, c in zip(eval_set.prompt_ids, eval_set.completion_ids))

        blocks = eval_set.blocks()
        m = ev.compute_metrics(
            ev.model_logps(better, eval_set),
            ev.model_logps(base, eval_set),
            eval_set.labels,
            blocks,
            beta=BETA,
            weights=weights,
        )
        trl_metrics = logged[name]
        assert m.loss == pytest.approx(trl_metrics[f"eval_{name}_loss"], abs=1e-5)
        assert m.kl == pytest.approx(trl_metrics["eval_kl"], abs=1e-5)
        assert m.kl > 0 or name == "chat"  # at least one split exercises a positive z0
        # TRL averages per-batch class means; rebuild that from our per-row rewards.
        rewards, labels = np.array(m.rewards), np.array(m.labels)
        for key, want in (("rewards/chosen", True), ("rewards/rejected", False)):
            per_block = [rewards[b][labels[b] == want].mean() for b in blocks if (labels[b] == want).any()]
            assert float(np.mean(per_block)) == pytest.approx(trl_metrics[f"eval_{key}"], abs=1e-5)
    assert truncated >= 2  # right truncation was exercised


# ----------------------------------------------------------------------------------------------
# Metrics


def test_metric_formulas_on_planted_logps():
    labels = np.array([True, False, True, False, True])
    blocks = [slice(0, 2), slice(2, 4), slice(4, 5)]
    ref = ev.ModelLogps(matched=np.zeros(5), kl=np.zeros(5))
    policy = ev.ModelLogps(
        matched=np.array([2.0, -1.0, 0.5, 0.5, 0.25]),
        kl=np.array([1.0, 1.0, -3.0, -1.0, 0.25]),  # block z0s: 1, clamp(−2) = 0, 0.25
    )
    m = ev.compute_metrics(policy, ref, labels, blocks, beta=0.5, weights=(2.0, 1.0))
    z0 = [1.0, 1.0, 0.0, 0.0, 0.25]
    # rows: D 2>1 hit, U −1<1 hit, D 0.5>0 hit, U 0.5>0 miss, D 0.25 == z0 tie (half)
    assert m.reward_accuracy == pytest.approx((1 + 1 + 1 + 0 + 0.5) / 5)
    assert m.desirable_accuracy == pytest.approx(2.5 / 3)
    assert m.undesirable_accuracy == pytest.approx(0.5)
    assert m.kl == pytest.approx((1.0 + 0.0 + 0.25) / 3)
    assert m.rewards == pytest.approx((1.0, -0.5, 0.25, 0.25, 0.125))
    assert m.margin == pytest.approx((1.0 + 0.25 + 0.125) / 3 - (-0.5 + 0.25) / 2)

    def sig(x):
        return 1 / (1 + math.exp(-x))

    lr = policy.matched
    expected = [
        2.0 * (1 - sig(0.5 * (lr[i] - z0[i]))) if labels[i] else 1.0 * (1 - sig(0.5 * (z0[i] - lr[i])))
        for i in range(5)
    ]
    assert m.loss == pytest.approx(float(np.mean(expected)))
    assert (m.n_rows, m.n_desirable, m.n_undesirable) == (5, 3, 2)


def test_base_against_itself_scores_half_and_zero_rewards(better_vs_base):
    base = better_vs_base.models["base"]
    assert base.reward_accuracy == 0.5
    assert base.desirable_accuracy == 0.5 and base.undesirable_accuracy == 0.5
    assert set(base.rewards) == {0.0}
    assert base.margin == 0.0 and base.kl == 0.0
    assert base.loss == pytest.approx(0.5)  # σ(0) with unit weights
    assert len(base.rewards) == better_vs_base.n_rows == 14


def test_better_model_beats_the_base_and_worse_model_loses(better_vs_base, worse_vs_better):
    better = better_vs_base.models["candidate"]
    assert better.reward_accuracy > 0.5 and better.margin > 0
    assert better.reward_desirable_mean > better.reward_undesirable_mean
    assert better.loss < 0.5
    worse = worse_vs_better.models["candidate"]
    assert worse.reward_accuracy < 0.5 and worse.margin < 0
    # Rewards are always against the base, so the better model scores the same as champion.
    assert worse_vs_better.models["champion"].rewards == better.rewards


def test_each_model_is_loaded_once(models, monkeypatch):
    loaded = []

    def counting_load(ref, **kw):
        loaded.append(str(ref))
        return load_causal_lm(ref, **kw)

    monkeypatch.setattr(compare, "load_causal_lm", counting_load)  # where evaluate_candidates looks it up
    result = ev.evaluate_candidates(
        _rows(),
        candidate=models["better"],
        champion=str(models["base"]) + "/",
        base=models["base"],
        beta=BETA,
        batch_size=BATCH,
    )
    assert len(loaded) == 2
    assert result.champion_is_base and result.baseline_role == "champion"
    assert result.models["champion"].scalars() == result.models["base"].scalars()

    loaded.clear()
    week_one = ev.evaluate_candidates(
        _rows(), candidate=models["better"], champion=None, base=models["base"], beta=BETA, batch_size=BATCH
    )
    assert len(loaded) == 2 and "champion" not in week_one.models and week_one.baseline_role == "base"


def test_lora_checkpoint_is_loaded_and_evaluated(models):
    from peft import PeftModel

    result = _evaluate(models, "lora", None)
    cand = result.models["candidate"]
    assert any(abs(r) > 1e-3 for r in cand.rewards)

    tokenizer = load_tokenizer(models["base"])
    eval_set = ev.prepare_eval_set(_rows(), tokenizer, batch_size=BATCH)
    base = load_causal_lm(models["base"])
    lora = PeftModel.from_pretrained(load_causal_lm(models["base"]), str(models["lora"])).eval()
    with torch.no_grad():
        expected = BETA * (
            _hand_logps(lora, eval_set.prompt_ids, eval_set.completion_ids)
            - _hand_logps(base, eval_set.prompt_ids, eval_set.completion_ids)
        )
    np.testing.assert_allclose(cand.rewards, expected.numpy(), rtol=0, atol=1e-4)


def test_accepts_a_dataframe_and_rejects_an_empty_eval(models):
    frame = pd.DataFrame(_rows())
    frame.loc[frame["prompt_messages"].isna(), "prompt_messages"] = np.nan
    result = ev.evaluate_candidates(
        frame, candidate=models["better"], champion=None, base=models["base"], beta=BETA, batch_size=BATCH
    )
    assert result.n_rows == 14 and (result.n_desirable, result.n_undesirable) == (8, 6)
    with pytest.raises(ValueError, match="no held-out rows"):
        ev.evaluate_candidates([], candidate=models["better"], champion=None, base=models["base"])


# ----------------------------------------------------------------------------------------------
# Promotion


def test_promotes_better_against_base_and_blocks_worse_against_better(better_vs_base, worse_vs_better):
    promote = ev.decide_promotion(better_vs_base)
    assert promote.promote and promote.baseline_role == "base"
    assert promote.checks[0].name == "reward_accuracy" and promote.checks[0].passed
    assert promote.checks[0].baseline_value == 0.5

    block = ev.decide_promotion(worse_vs_better)
    assert not block.promote and block.baseline_role == "champion"
    (check,) = block.checks
    assert check.delta == pytest.approx(check.value - check.baseline_value) and check.delta < -0.01
    assert "FAIL" in block.reasons[0] and "reward_accuracy" in block.reasons[0]


def test_collapse_blocks_promotion(better_vs_base):
    decision = ev.decide_promotion(better_vs_base, collapsed=True, collapse_reason="loss became NaN at step 12")
    assert all(c.passed for c in decision.checks) and not decision.promote
    assert "loss became NaN at step 12" in decision.reasons[-1]


def test_tolerance_direction_and_external_metrics(better_vs_base, worse_vs_better):
    # The worse candidate is within a tolerance wide enough to cover its drop.
    drop = worse_vs_better.models["champion"].reward_accuracy - worse_vs_better.models["candidate"].reward_accuracy
    assert ev.decide_promotion(worse_vs_better, ev.PromotionPolicy(tolerance=drop + 1e-9)).promote
    assert not ev.decide_promotion(worse_vs_better, ev.PromotionPolicy(tolerance=drop - 1e-3)).promote
    # Lower-is-better: the loss of the better model is below the base's, a higher loss would fail.
    loss_rule = ev.PromotionPolicy(extra=(ev.MetricRule("loss", 0.0, higher_is_better=False),))
    assert ev.decide_promotion(better_vs_base, loss_rule).promote
    assert not ev.decide_promotion(
        worse_vs_better, ev.PromotionPolicy(metric="loss", tolerance=0.0, higher_is_better=False)
    ).promote

    oracle = ev.PromotionPolicy(extra=(ev.MetricRule("oracle_accuracy", 0.02),))
    ok = {"candidate": {"oracle_accuracy": 0.69}, "base": {"oracle_accuracy": 0.70}}
    bad = {"candidate": {"oracle_accuracy": 0.60}, "base": {"oracle_accuracy": 0.70}}
    assert ev.decide_promotion(better_vs_base, oracle, external=ok).promote
    decision = ev.decide_promotion(better_vs_base, oracle, external=bad)
    assert not decision.promote and "oracle_accuracy" in decision.reasons[1] and "FAIL" in decision.reasons[1]
    assert not ev.decide_promotion(better_vs_base, oracle).promote  # required and missing
    optional = ev.PromotionPolicy(extra=(ev.MetricRule("oracle_accuracy", 0.02, required=False),))
    assert ev.decide_promotion(better_vs_base, optional).promote
    assert better_vs_base.external == {}  # the overlay does not modify the result

    # Boundary: exactly the tolerance is not a regression (despite float noise).
    result = copy.deepcopy(better_vs_base)
    result.add_external("candidate", {"x": 0.59})
    result.add_external("base", {"x": 0.60})
    assert ev.decide_promotion(result, ev.PromotionPolicy(metric="x")).promote
    result.add_external("candidate", {"x": 0.589})
    assert not ev.decide_promotion(result, ev.PromotionPolicy(metric="x")).promote


def test_the_default_policy_watches_reward_accuracy_and_the_answers():
    assert ev.EvalConfig().batch_size == 8
    default = ev.PromotionPolicy()
    assert (default.metric, default.tolerance) == ("reward_accuracy", 0.01)
    assert (default.min_win_rate_upper, default.min_edit_closer_upper, default.max_reproduction_increase) == (
        0.5,
        0.5,
        0.0,
    )
    policy = ev.PromotionPolicy(metric="loss", tolerance=0.05)
    assert policy.rules() == (ev.MetricRule("loss", 0.05),)
    for cls in (ev.EvalConfig, ev.PromotionPolicy):
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls


# ----------------------------------------------------------------------------------------------
# Report


def test_report_contains_models_decision_data_and_plots(models, worse_vs_better, tmp_path):
    result = copy.deepcopy(worse_vs_better)
    result.add_external("candidate", {"oracle_accuracy": 0.4})
    decision = ev.decide_promotion(result)
    artifacts = ev.write_report(result, decision, tmp_path / "report")

    md = artifacts.markdown
    assert artifacts.markdown_path.read_text(encoding="utf-8") == md
    assert md.startswith("# KTO evaluation: week 2026-W02\n")
    table = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
    assert [line.split(" | ")[0] for line in table] == ["| base", "| champion", "| candidate"]
    assert f"`{models['worse']}`" in table[2]
    cand = result.models["candidate"]
    assert f"{cand.reward_accuracy:.4f}" in table[2] and f"{cand.margin:.4f}" in table[2]
    assert "oracle_accuracy" in md and "0.4000" in table[2]
    assert "DO NOT PROMOTE" in md and decision.reasons[0] in md
    assert "| desirable | 8 |" in md and "| undesirable | 6 |" in md
    for key, path in artifacts.plots.items():
        assert path.parent == artifacts.markdown_path.parent and f"]({path.name})" in md, key
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
        assert b"matplotlib" not in data.lower()  # no Software/version chunk


def test_report_is_deterministic_across_runs(models, tmp_path):
    outputs = []
    for run in range(2):
        result = _evaluate(models, "better", "base")
        artifacts = ev.write_report(result, ev.decide_promotion(result), tmp_path / f"run{run}")
        outputs.append((artifacts.markdown, {k: p.read_bytes() for k, p in artifacts.plots.items()}))
    assert outputs[0][0] == outputs[1][0]
    assert "champion (= base)" in outputs[0][0] and "**Decision: PROMOTE**" in outputs[0][0]
    assert outputs[0][1] == outputs[1][1]  # PNG bytes too


def test_evaluation_module_does_not_import_dagster():
    code = "import sys, kto_pipeline.evaluate; sys.exit(any(m.split('.')[0] == 'dagster' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
