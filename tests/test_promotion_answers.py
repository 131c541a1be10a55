"""Promotion reads answers: judge-free signals, the policy's answer rules, the report, and the
acceptance case: a candidate that is worse in answers but better in implicit reward is blocked."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kto_pipeline import evaluate as ev
from kto_pipeline.evaluate.answer_signals import edit_signal, reproduction_signal
from kto_pipeline.evaluate.judge import PairVerdicts, PairwiseJudgement
from kto_pipeline.sim import bundled_base, get_scenario, sample_answers, task_split
from kto_pipeline.sim.judge_server import serve_oracle_judge
from kto_pipeline.sim.task import accuracy

STATS = {"confidence": 0.95, "n_resamples": 500, "seed": 0}
IMPLICIT_ONLY = ev.PromotionPolicy(min_win_rate_upper=0.0, min_edit_closer_upper=0.0, max_reproduction_increase=1.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on 2 shared cores: one thread is faster
    yield
    torch.set_num_threads(previous)


def test_intervals_are_seeded_and_degenerate_data_is_a_point():
    a = ev.bootstrap_mean([1, 0, 1, 1, 0.5, 0], seed=3)
    assert a == ev.bootstrap_mean([1, 0, 1, 1, 0.5, 0], seed=3) and a.low < a.estimate < a.high
    ties = ev.bootstrap_mean([0.5] * 10)
    assert (ties.low, ties.estimate, ties.high) == (0.5, 0.5, 0.5)
    assert ev.bootstrap_mean([]).n == 0 and not ev.bootstrap_mean([1.0]).known


def test_edit_closeness_and_reproduced_thumbs_down():
    edits = ["The answer is 68.", "Paris", "42"]
    signal = edit_signal(edits, ["The answer is 68", "paris", "41"], ["It is 67.", "Paris", "42"], **STATS)
    assert signal.scores == (1.0, 0.5, 0.0)  # closer / equally close (case folded) / farther
    assert signal.candidate_similarity < signal.baseline_similarity or signal.scores[0] == 1.0

    bad = ["67", "I cannot help with that.", "no"]
    answers = {"candidate": ["68", "I cannot help with that", "no"], "champion": ["67", "Sure: ...", "No"]}
    rep = reproduction_signal(bad, answers, candidate_role="candidate", baseline_role="champion", **STATS)
    # near-exact counts (a missing full stop), case is folded
    assert rep.by_role["candidate"].estimate == pytest.approx(2 / 3) and rep.by_role["champion"].estimate == 2 / 3
    assert rep.change.estimate == 0.0


def test_heldout_prompts_group_edits_and_thumbs_down_and_sample_with_a_seed():
    rows = [
        {"prompt": "1+1=", "prompt_messages": None, "completion": "2", "label": True, "signal": "edit"},
        {"prompt": "1+1=", "prompt_messages": None, "completion": "3", "label": False, "signal": "edit_original"},
        {"prompt": "2+2=", "prompt_messages": None, "completion": "5", "label": False, "signal": "thumb"},
        {"prompt": "3+3=", "prompt_messages": None, "completion": "6", "label": True, "signal": "thumb"},
        {"prompt": "4+4=", "prompt_messages": None, "completion": "9", "label": False, "signal": "synthetic_degraded"},
    ]
    prompts = ev.heldout_prompts(rows, "plain", 10, seed=0)
    assert [p.text for p in prompts] == ["1+1=", "2+2=", "3+3=", "4+4="]
    assert prompts[0].edits == ("2",) and prompts[0].thumbs_down == ("3",)
    assert prompts[1].thumbs_down == ("5",) and prompts[3].thumbs_down == ()  # synthetic rows are no user's thumb
    chat = ev.heldout_prompts(rows[:1], "conversational", 10, seed=0)[0]
    assert chat.prompt == [{"role": "user", "content": "1+1="}]
    assert ev.heldout_prompts(rows, "plain", 2, seed=1) == ev.heldout_prompts(rows, "plain", 2, seed=1)
    assert len(ev.heldout_prompts(rows, "plain", 2, seed=1)) == 2


def _answers(win_rate_scores, *, edit_scores=None, config=None) -> ev.AnswerEvaluation:
    n = len(win_rate_scores)
    pairs = tuple(PairVerdicts("A", "B", s) for s in win_rate_scores)
    judgement = PairwiseJudgement("scripted", pairs, ev.bootstrap_mean(win_rate_scores, seed=0), 2 * n, 0, 0)
    edit = None
    if edit_scores is not None:
        edit = ev.EditSignal(ev.bootstrap_mean(edit_scores, seed=0), 0.5, 0.5, tuple(edit_scores))
    return ev.AnswerEvaluation(
        "champion",
        tuple(ev.HeldoutPrompt(f"p{i}", f"p{i}") for i in range(n)),
        {"candidate": tuple("c" * n), "champion": tuple("b" * n)},
        edit,
        None,
        judgement,
        config or ev.AnswerConfig(),
    )


def test_the_answer_rules_block_only_on_significant_evidence():
    policy = ev.PromotionPolicy()
    losing = ev.answer_checks(_answers([0.0] * 30 + [0.5] * 10), policy)
    assert not losing[0].passed and "upper bound is below 0.5" in losing[0].describe()
    even = ev.answer_checks(_answers([0.0, 1.0] * 20), policy)
    assert all(c.passed for c in even)
    # The edit rule reads the edit signal the same way; too few records for an interval: skipped.
    farther = ev.answer_checks(_answers([0.5] * 10, edit_scores=[0.0] * 12), policy)
    assert [c.passed for c in farther] == [True, False, True]
    few = ev.answer_checks(_answers([0.5] * 10, edit_scores=[0.0]), policy)
    assert few[1].skipped and few[1].passed
    # No judge: skipped, unless the policy requires one.
    assert ev.answer_checks(None, policy)[0].skipped
    required = ev.answer_checks(None, dataclasses.replace(policy, require_judge=True))
    assert not required[0].passed and "no judge configured" in required[0].describe()
    assert ev.answer_checks(None, IMPLICIT_ONLY) == ()


def test_the_policy_fields_are_documented_for_the_dagster_config():
    for cls in (ev.PromotionPolicy, ev.AnswerConfig):
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls
    with pytest.raises(ValueError, match="base_url"):
        ev.AnswerConfig(backend="openai")


# ----------------------------------------------------------------------------------------------
# Acceptance: better implicit reward, worse answers → blocked by the combined gate


def _misled_rows(liked: str, disliked: str, n: int = 40) -> list[dict]:
    """Held-out thumbs that favour `liked`'s greedy answers over `disliked`'s (users misled, or
    a labelling bug): the implicit reward of a model that writes `liked`'s answers goes up."""
    prompts = list(task_split().heldout[:n])
    good, bad = sample_answers(liked, prompts, 0.0, 0), sample_answers(disliked, prompts, 0.0, 0)
    rows = []
    for i, (p, g, b) in enumerate(zip(prompts, good, bad)):
        if g == b:
            continue
        rows.append({"row_id": f"u{i}", "prompt": p, "prompt_messages": None, "completion": g, "label": True})
        rows.append({"row_id": f"d{i}", "prompt": p, "prompt_messages": None, "completion": b, "label": False})
    return rows


def _gate(candidate, champion, rows, judge=None, n_prompts=64):
    result = ev.evaluate_candidates(
        rows, candidate=candidate, champion=champion, base=champion, beta=0.1, batch_size=8, max_length=64
    )
    answers = ev.evaluate_answers(
        rows,
        candidate=candidate,
        baseline=champion,
        baseline_role=result.baseline_role,
        config=ev.AnswerConfig(n_prompts=n_prompts, max_new_tokens=4, batch_size=32, decode_join="", seed=0),
        data_format=result.data_format,
        judge=judge,
    )
    return result, answers


def test_a_candidate_worse_in_answers_but_better_in_implicit_reward_is_blocked(tmp_path):
    good = bundled_base(get_scenario("carry_bug"))  # right on most prompts without a carry
    weak = bundled_base(get_scenario("scarce_positives"))  # right on few
    prompts = list(task_split().heldout[:40])
    assert accuracy(prompts, sample_answers(weak, prompts, 0.0, 0)) < accuracy(
        prompts, sample_answers(good, prompts, 0.0, 0)
    )
    with serve_oracle_judge() as judge:
        oracle = ev.OpenAIJudge(judge.model, judge.base_url)
        result, answers = _gate(weak, good, _misled_rows(weak, good), oracle)
        control_result, control_answers = _gate(good, weak, _misled_rows(good, weak), oracle)

    # The log-prob gate alone promotes the weak candidate: its implicit reward is far better.
    assert result.models["candidate"].reward_accuracy > result.models["champion"].reward_accuracy + 0.2
    assert ev.decide_promotion(result, IMPLICIT_ONLY).promote
    # Its answers, judged over HTTP by the oracle in both orders, lose.
    assert answers.win_rate.high < 0.5 and answers.judgement.junk == 0 and answers.judgement.calls > 0
    decision = ev.decide_promotion(result, ev.PromotionPolicy(), answers=answers)
    assert not decision.promote
    assert decision.checks[0].passed  # the implicit-reward check passed ...
    judge_check = next(s for s in decision.signals if s.name == "judge win rate")
    assert not judge_check.passed  # ... the judge blocked it
    assert not decision.collapsed

    # Control: the same gate promotes a candidate that is better in both.
    assert control_answers.win_rate.low > 0.5
    assert ev.decide_promotion(control_result, ev.PromotionPolicy(), answers=control_answers).promote

    # The report shows the decision, each signal with its interval, and answers side by side.
    md = ev.write_report(result, decision, tmp_path / "report", answers=answers).markdown
    assert "**Decision: DO NOT PROMOTE**" in md and "judge win rate" in md and "95% CI" in md
    assert "| prompt | champion | candidate | verdict |" in md and "champion wins" in md
    assert "thumbs-down answers reproduced" in md
    sample = answers.samples()[0]
    assert f"| {sample['prompt']} | {sample['champion']} | {sample['candidate']} |" in md


def test_local_generation_matches_the_simulators_greedy_sampler_and_is_seeded():
    base = bundled_base(get_scenario("carry_bug"))
    prompts = ["Hi, I'm <PERSON_1>. 23+45=", *task_split().heldout[:20]]  # mixed lengths: left padding
    greedy = ev.generate_local(base, prompts, max_new_tokens=4, batch_size=8, decode_join="")
    assert greedy == sample_answers(base, prompts, 0.0, 0)
    spaced = ev.generate_local(base, prompts[:3], max_new_tokens=4)  # the tokenizer's own decode
    assert [s.replace(" ", "") for s in spaced] == greedy[:3]
    sampled = [
        ev.generate_local(base, prompts, max_new_tokens=4, temperature=1.0, seed=7, decode_join="") for _ in "ab"
    ]
    assert sampled[0] == sampled[1] and sampled[0] != greedy


def test_an_untrained_copy_of_the_champion_is_blocked_as_unchanged():
    champion = bundled_base(get_scenario("carry_bug"))
    rows = _misled_rows(champion, bundled_base(get_scenario("scarce_positives")))
    result, answers = _gate(champion, champion, rows, n_prompts=16)
    # Nothing is worse, so every "no worse" rule passes; only the unchanged rule sees it.
    assert ev.decide_promotion(
        result, dataclasses.replace(ev.PromotionPolicy(), block_unchanged=False), answers=answers
    ).promote
    decision = ev.decide_promotion(result, ev.PromotionPolicy(), answers=answers)
    assert not decision.promote
    [unchanged] = [s for s in decision.signals if s.name == "changed from the baseline"]
    assert (
        not unchanged.passed and "identical rewards on every held-out row and identical answers" in unchanged.describe()
    )
