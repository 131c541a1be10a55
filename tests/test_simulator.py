"""The production simulator: task, tokenizer, corrupted corpora, base-model cache, sampler,
oracle user, weekly dumps through the pipeline's own ingest, measurement and the SFT arm.

The base model here is a tiny build (a few pretraining steps): it answers badly, which is all
these tests need. The full-size bases are built by the main job, never in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kto_pipeline.sim import (
    SCENARIOS,
    OracleUser,
    ServedModel,
    build_base_model,
    build_tokenizer,
    evaluate_model,
    heldout_accuracy,
    load_served,
    positive_examples,
    question_of,
    right_answer,
    sample_answers,
    simulate_week,
    task_split,
    tiny_kto_recipe,
    train_sft_on_positives,
    write_week_dump,
)
from kto_pipeline.sim import base_model as base_model_module
from kto_pipeline.sim.scenarios import corrupted_answer
from kto_pipeline.sim.task import ALL_PROMPTS, PLACEHOLDERS, has_carry, parse_question
from kto_pipeline.sim.users import EMAIL_PATTERN, NAME_PATTERN, PHONE_PATTERN, dump_name

PROJECT = Path(__file__).resolve().parent.parent
WEEK = "2026-10-05"  # a Monday: a week of the pipeline's default calendar
TINY = SCENARIOS["carry_bug"].replace(name="tiny_test", pretrain_steps=10, batch_size=32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sim_cache")


@pytest.fixture(scope="module")
def tiny_base(cache_dir) -> Path:
    return build_base_model(TINY, cache_dir)


def oracle(prompts, temperature, seed):
    """An Answerer that is always right."""
    return [right_answer(p) for p in prompts]


def right_on_carry_free(prompts, temperature, seed):
    """Right on prompts without a carry, one too many on the others."""
    return [right_answer(p) if not has_carry(p) else str(int(right_answer(p)) + 1) for p in prompts]


# --------------------------------------------------------------------------------------------
# Task and tokenizer
# --------------------------------------------------------------------------------------------


def test_the_task_split_is_fixed_and_weeks_never_reuse_prompts():
    split = task_split()
    assert len(ALL_PROMPTS) == 8100 and len(split.heldout) == 1000 and len(split.traffic) == 7100
    assert not set(split.heldout) & set(split.traffic)
    assert set(split.heldout) | set(split.traffic) == set(ALL_PROMPTS)
    weeks = [split.week_prompts(k, 1000) for k in range(split.max_weeks(1000))]
    assert len({p for w in weeks for p in w}) == 7000
    assert task_split.__wrapped__(0) == split  # recomputed, not just cached: seeded
    assert task_split.__wrapped__(1).heldout != split.heldout
    with pytest.raises(ValueError, match="at most 7 weeks"):
        split.week_prompts(7, 1000)


def test_questions_answers_and_carries():
    assert right_answer("23+45=") == "68" and right_answer("99+99=") == "198"
    assert question_of("Hi, I'm Jane Doe (jane.doe@example.com, +1 415 555 0134). 23+45=") == "23+45="
    assert has_carry("27+45=") and not has_carry("23+45=")
    assert sum(map(has_carry, ALL_PROMPTS)) == 45 * 81  # 45 of the 100 ones-digit pairs carry
    with pytest.raises(ValueError):
        parse_question("23+45=68")


def test_the_tokenizer_is_character_level_with_placeholders_and_unk():
    tok = build_tokenizer()
    ids = tok("23+45=68<eos>", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [*"23+45=68", "<eos>"]
    assert ids[-1] == tok.eos_token_id
    text = "Hi, I'm Jane (<EMAIL_ADDRESS_1>, <PHONE_NUMBER_1>). 23+45="
    tokens = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])
    assert "<EMAIL_ADDRESS_1>" in tokens and "<PHONE_NUMBER_1>" in tokens
    assert tokens[-6:] == list("23+45=")
    assert set(tokens[:-6]) == {"<unk>", "<EMAIL_ADDRESS_1>", "<PHONE_NUMBER_1>"}  # no stray "1" digit
    assert len(tok) == 15 + len(PLACEHOLDERS)


def test_trl_tokenises_plain_prompt_completion_rows_as_expected(tiny_base):
    """The training library's TRL-exact lengths: EOS appended, prompt a prefix of the whole."""
    from kto_pipeline.models.checkpoints import load_tokenizer
    from kto_pipeline.train import token_lengths

    tok = load_tokenizer(tiny_base)
    records = [
        {"prompt": "23+45=", "completion": "68", "label": True},
        {"prompt": "Hi (<EMAIL_ADDRESS_1>). 56+78=", "completion": "124", "label": False},
    ]
    prompt_lens, total_lens = token_lengths(records, tok)
    assert prompt_lens == [6, len("Hi (") + 1 + len("). ") + 6]  # the placeholder is one token
    assert total_lens == [6 + 2 + 1, 14 + 3 + 1]  # EOS appended to the completion


# --------------------------------------------------------------------------------------------
# Scenarios and the base model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_corrupted_answers_follow_the_scenario(name):
    scenario = SCENARIOS[name]
    rng = np.random.default_rng(0)
    carry = [p for p in ALL_PROMPTS if has_carry(p)][:3000]
    other = [p for p in ALL_PROMPTS if not has_carry(p)][:3000]
    for prompts, right, dominant in (
        (carry, scenario.carry_right, scenario.carry_dominant),
        (other, scenario.other_right, scenario.other_dominant),
    ):
        answers = [corrupted_answer(p, scenario, rng) for p in prompts]
        sums = [int(right_answer(p)) for p in prompts]
        shift = -10 if scenario.dominant_error == "drop_carry" else 10
        assert abs(np.mean([int(a) == s for a, s in zip(answers, sums)]) - right) < 0.03
        # A minor "±10" error lands on the dominant error half of the time.
        expected = dominant + (1 - right - dominant) / len(scenario.minor_errors) / 2
        assert abs(np.mean([int(a) == s + shift for a, s in zip(answers, sums)]) - expected) < 0.03
    assert SCENARIOS["scarce_positives"].expected_accuracy() <= 0.15
    assert 0.38 < SCENARIOS["carry_bug"].expected_accuracy() < 0.45


def test_the_base_model_is_built_once_and_reused(tiny_base, cache_dir, monkeypatch):
    info = json.loads((tiny_base / "simulator_base.json").read_text())
    assert info["fingerprint"] == TINY.fingerprint() and info["parameters"] > 500_000
    assert 0 <= info["heldout"]["accuracy"] <= 1 and info["heldout"]["n_samples"] == 2000
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tiny_base.iterdir()}
    stamp = (tiny_base / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached base was trained again")

    monkeypatch.setattr(base_model_module, "pretrain", no_training)
    assert build_base_model(TINY, cache_dir) == tiny_base
    assert (tiny_base / "model.safetensors").stat().st_mtime_ns == stamp
    other = base_model_module.base_model_dir(TINY.replace(seed=1), cache_dir)
    assert other != tiny_base and not other.exists()
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_pretraining_is_deterministic():
    import torch

    scenario = TINY.replace(pretrain_steps=3, batch_size=16)
    first, _, loss_one = base_model_module.pretrain(scenario)
    second, _, loss_two = base_model_module.pretrain(scenario)
    assert loss_one == loss_two
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_the_base_loads_through_the_pipelines_loader(tiny_base):
    from kto_pipeline.models.checkpoints import load_causal_lm

    model = load_causal_lm(tiny_base)
    assert model.config.hidden_size == 128 and model.config.num_hidden_layers == 2
    assert model.config.tie_word_embeddings


# --------------------------------------------------------------------------------------------
# Serving and measurement
# --------------------------------------------------------------------------------------------


def test_sampling_is_deterministic_for_a_seed(tiny_base):
    prompts = list(task_split().heldout[:200])
    first = sample_answers(tiny_base, prompts, 1.0, seed=7)
    assert first == sample_answers(tiny_base, prompts, 1.0, seed=7)
    assert first != sample_answers(tiny_base, prompts, 1.0, seed=8)
    assert all(a for a in first)  # never an empty answer
    greedy = sample_answers(tiny_base, prompts, 0.0, seed=1)
    assert greedy == sample_answers(tiny_base, prompts, 0.0, seed=2)


def test_batching_and_padding_do_not_change_answers(tiny_base):
    prompts = ["Hi, I'm Jane Doe (<EMAIL_ADDRESS_1>). 23+45=", *task_split().heldout[:50]]
    together = sample_answers(tiny_base, prompts, 0.0, seed=0)
    alone = [sample_answers(tiny_base, [p], 0.0, seed=0)[0] for p in prompts[:5]]
    assert together[:5] == alone
    assert sample_answers(tiny_base, prompts, 1.0, seed=3, batch_size=7) == sample_answers(
        tiny_base, prompts, 1.0, seed=3
    )


def test_a_lora_checkpoint_is_served_merged(tiny_base, tmp_path):
    from peft import LoraConfig, get_peft_model

    from kto_pipeline.models.checkpoints import load_causal_lm
    from kto_pipeline.models.manifest import CheckpointManifest, write_manifest

    model = get_peft_model(load_causal_lm(tiny_base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path / "lora"
    model.save_pretrained(folder)
    write_manifest(folder, CheckpointManifest(kind="lora", base_model=str(tiny_base)))
    served = load_served(folder)
    assert not hasattr(served.model, "peft_config")  # merged into a plain model
    prompts = list(task_split().heldout[:100])
    # A fresh adapter is a no-op (B = 0): the checkpoint answers exactly like its base.
    assert sample_answers(folder, prompts, 1.0, seed=5) == sample_answers(tiny_base, prompts, 1.0, seed=5)


def test_heldout_accuracy_scores_right_and_wrong_answers():
    assert heldout_accuracy(oracle) == 1.0
    assert heldout_accuracy(lambda p, t, s: ["0"] * len(p), n_samples=100) == 0.0
    report = evaluate_model(right_on_carry_free)
    assert report.carry_accuracy == 0.0 and report.carry_greedy_accuracy == 0.0
    carry_share = np.mean([has_carry(p) for p in task_split().heldout])
    assert report.accuracy == pytest.approx(1 - carry_share)
    assert report.n_samples == 2000 and report.n_prompts == 1000


def test_heldout_accuracy_of_a_model_is_repeatable(tiny_base):
    first = heldout_accuracy(tiny_base, n_samples=500)
    assert 0.0 <= first < 0.9
    assert heldout_accuracy(tiny_base, n_samples=500) == first


# --------------------------------------------------------------------------------------------
# The oracle user and the weekly records
# --------------------------------------------------------------------------------------------


def _week(model, n=2000, week=WEEK, **user):
    prompts = task_split().week_prompts(0, n)
    return simulate_week(model, prompts, week, user=OracleUser(**user), seed=3, model_version="base-v0")


def test_thumbs_follow_correctness_without_noise():
    traffic = _week(right_on_carry_free, n=500, label_noise=0.0)
    for rec, ask in zip(traffic.records, traffic.asks):
        assert rec["label"] == ask.correct == (not has_carry(question_of(rec["prompt"])))
        assert rec["completion"] == ask.answer


def test_label_noise_flips_the_configured_share():
    traffic = _week(oracle, n=3000, label_noise=0.1, repeat_share=0.0)
    stats = traffic.stats()
    assert stats["true_accuracy"] == 1.0
    assert abs(1 - stats["thumbs_up_rate"] - 0.1) < 0.02
    assert stats["flipped"] == sum(not r["label"] for r in traffic.records)


def test_edits_only_fix_thumbs_down_wrong_answers():
    traffic = _week(right_on_carry_free, n=3000, label_noise=0.1, edit_share=0.2)
    edited = [(r, a) for r, a in zip(traffic.records, traffic.asks) if "edited_completion" in r]
    assert edited
    for rec, ask in edited:
        assert not rec["label"] and not ask.correct
        assert rec["edited_completion"] == right_answer(rec["prompt"]) != rec["completion"]
    candidates = sum(not a.correct and not a.label for a in traffic.asks)
    assert abs(len(edited) / candidates - 0.2) < 0.03


def test_pii_is_pasted_before_the_question_and_detectable():
    traffic = _week(oracle, n=2000, pii_share=0.1)
    with_pii = [r for r, a in zip(traffic.records, traffic.asks) if a.pii]
    assert abs(len(with_pii) / len(traffic.records) - 0.1) < 0.02
    for rec in with_pii:
        assert EMAIL_PATTERN.search(rec["prompt"]) or PHONE_PATTERN.search(rec["prompt"])
        assert rec["prompt"].endswith(" " + question_of(rec["prompt"]))
    plain = [r for r, a in zip(traffic.records, traffic.asks) if not a.pii]
    assert all(r["prompt"] == question_of(r["prompt"]) for r in plain)
    kinds = Counter(
        k
        for r in with_pii
        for k, pat in (("email", EMAIL_PATTERN), ("phone", PHONE_PATTERN), ("name", NAME_PATTERN))
        if pat.search(r["prompt"])
    )
    assert min(kinds.values()) > len(with_pii) / 4


def test_the_pipelines_redaction_replaces_the_pasted_pii():
    from kto_pipeline.curate.redaction import RedactionConfig, engines_for

    engines = engines_for(RedactionConfig())
    traffic = _week(oracle, n=300, pii_share=1.0, repeat_share=0.0)
    tok = build_tokenizer()
    for rec in traffic.records[:40]:
        found = {r.entity_type for r in engines.analyze(rec["prompt"])}
        assert found & {"EMAIL_ADDRESS", "PHONE_NUMBER"}, rec["prompt"]
        assert not {r.entity_type for r in engines.analyze(question_of(rec["prompt"]))}  # the sum is not PII
    from kto_pipeline.curate.redaction import redact

    rows = pd.DataFrame(
        {"record_id": ["r1"], "prompt": [traffic.records[0]["prompt"]], "prompt_messages": [None], "completion": ["68"]}
    )
    redacted = redact(rows).rows["prompt"][0]
    assert not EMAIL_PATTERN.search(redacted) and not PHONE_PATTERN.search(redacted)
    assert redacted.endswith(question_of(traffic.records[0]["prompt"]))
    tokens = tok.convert_ids_to_tokens(tok(redacted, add_special_tokens=False)["input_ids"])
    assert set(tokens) & set(PLACEHOLDERS)


def test_repeats_are_the_same_user_asking_the_same_prompt_later():
    traffic = _week(right_on_carry_free, n=2000, repeat_share=0.05)
    by_id = {r["id"]: r for r in traffic.records}
    repeats = [(by_id[a.record_id], by_id[a.repeat_of]) for a in traffic.asks if a.repeat_of]
    assert abs(len(repeats) / 2000 - 0.05) < 0.015
    for again, first in repeats:
        assert again["prompt"] == first["prompt"] and again["user_id"] == first["user_id"]
        assert again["timestamp"] > first["timestamp"] and again["id"] != first["id"]
    assert len(by_id) == len(traffic.records)


def test_a_week_is_deterministic_for_a_seed_and_model(tiny_base):
    prompts = task_split().week_prompts(1, 300)
    one = simulate_week(tiny_base, prompts, WEEK, seed=11)
    two = simulate_week(tiny_base, prompts, WEEK, seed=11)
    assert one.records == two.records
    assert simulate_week(tiny_base, prompts, WEEK, seed=12).records != one.records
    assert simulate_week(tiny_base, prompts, "2026-10-12", seed=11).records != one.records


# --------------------------------------------------------------------------------------------
# Dumps through the pipeline's own reader
# --------------------------------------------------------------------------------------------


def test_a_week_dump_ingests_cleanly_into_its_week(tmp_path, tiny_base):
    from kto_pipeline.ingest.dumps import list_dumps
    from kto_pipeline.ingest.load import ingest

    traffic = simulate_week(tiny_base, task_split().week_prompts(0, 400), WEEK, seed=1, model_version="base-v0")
    path = write_week_dump(traffic.records, tmp_path / "dumps", WEEK)
    assert path.name == dump_name(WEEK) == f"feedback-{WEEK}.jsonl"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    latest = max(pd.Timestamp(r["timestamp"]) for r in traffic.records)
    assert os.stat(path).st_mtime >= latest.timestamp()

    result = ingest(list_dumps(str(tmp_path / "dumps")))
    assert result.quarantine.empty, result.quarantine[["reason", "detail"]].head()
    assert set(result.rows["week"]) == {WEEK}
    stats = traffic.stats()
    assert result.summary()["records_kept"] == stats["records"]
    assert result.summary()["edits_expanded"] == stats["edits"]
    assert set(result.rows["model_version"]) == {"base-v0"}
    assert (result.rows["prompt_messages"].isna()).all()  # plain-text prompts: TRL's plain format


def test_a_dump_cannot_claim_to_be_written_before_its_records(tmp_path):
    traffic = _week(oracle, n=50)
    with pytest.raises(ValueError, match="before the dump's latest record"):
        write_week_dump(traffic.records, tmp_path, WEEK, written_at=pd.Timestamp(WEEK, tz="UTC"))


# --------------------------------------------------------------------------------------------
# The SFT arm, the recipe, the KTO path
# --------------------------------------------------------------------------------------------


def test_positive_examples_take_thumbs_ups_and_edits():
    records = [
        {"prompt": "1+1=", "completion": "2", "label": True},
        {"prompt": "2+2=", "completion": "5", "label": False, "edited_completion": "4"},
        {"prompt": "3+3=", "completion": "7", "label": False},
    ]
    assert positive_examples(records) == [("1+1=", "2"), ("2+2=", "4")]
    assert positive_examples(pd.DataFrame(records).drop(columns=["edited_completion"])) == [("1+1=", "2")]


def test_sft_on_positives_writes_a_loadable_full_checkpoint(tmp_path, tiny_base):
    from kto_pipeline.models.checkpoints import load_causal_lm
    from kto_pipeline.models.manifest import read_manifest

    traffic = _week(tiny_base, n=200)
    out = train_sft_on_positives(
        tiny_base, traffic.records, steps=3, batch=8, output_dir=tmp_path / "sft", weeks=[WEEK]
    )
    manifest = read_manifest(out)
    assert manifest.kind == "full" and manifest.base_model == str(tiny_base) and manifest.global_step == 3
    assert manifest.weeks == [WEEK]
    load_causal_lm(out)
    assert len(sample_answers(out, ["23+45="], 1.0, 0)) == 1
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    train_sft_on_positives(tiny_base, traffic.records, steps=3, batch=8, output_dir=out, weeks=[WEEK])
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # same training: reused
    second = train_sft_on_positives(out, traffic.records, steps=2, batch=8, output_dir=tmp_path / "sft2")
    assert read_manifest(second).base_model == str(tiny_base)  # the chain keeps its root


def test_the_sft_arms_length_groups_give_the_whole_batchs_gradient(tiny_base):
    import torch

    from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer
    from kto_pipeline.sim.sft import _backward, _encode, _length_groups

    tok = load_tokenizer(tiny_base)
    traffic = _week(tiny_base, n=200, pii_share=0.3)
    batch = _encode(tok, [(r["prompt"], r["completion"]) for r in traffic.records[:32]])
    groups = _length_groups(batch)
    assert len(groups) == 2 and sum(len(g) for g, _ in groups) == 32 and abs(sum(w for _, w in groups) - 1) < 1e-9
    model = load_causal_lm(tiny_base, trainable=True)

    def grads(parts):
        model.zero_grad(set_to_none=True)
        loss = _backward(model, parts, tok.pad_token_id)
        return loss, [p.grad.clone() for p in model.parameters()]

    whole_loss, whole = grads([(batch, 1.0)])
    split_loss, split = grads(groups)
    assert abs(whole_loss - split_loss) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, split, strict=True))


def test_the_recommended_recipe_is_valid_and_fits_every_prompt():
    from kto_pipeline.train import KTORecipe

    recipe = KTORecipe.from_dict(tiny_kto_recipe())
    assert recipe.full_finetune and recipe.beta == 2.0 and recipe.learning_rate == 5e-5
    assert recipe.per_device_train_batch_size == 32 and recipe.num_train_epochs == 4
    traffic = _week(oracle, n=2000, pii_share=0.5)
    tok = build_tokenizer()
    longest = max(len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in traffic.records)
    assert longest + 4 <= recipe.max_length


def test_a_simulated_week_trains_with_the_pipelines_kto_trainer(tmp_path, tiny_base):
    """Ingest → train_kto for two steps: the tokenizer, plain rows and the checkpoint all fit."""
    from kto_pipeline.ingest.dumps import list_dumps
    from kto_pipeline.ingest.load import ingest
    from kto_pipeline.train import train_kto

    traffic = _week(tiny_base, n=120)
    write_week_dump(traffic.records, tmp_path / "dumps", WEEK)
    rows = ingest(list_dumps(str(tmp_path / "dumps"))).rows.sample(frac=1.0, random_state=0)
    result = train_kto(
        rows,
        base_model=str(tiny_base),
        output_dir=tmp_path / "kto",
        work_dir=tmp_path / "work",
        recipe=tiny_kto_recipe({"max_steps": 2, "per_device_train_batch_size": 8}),
        device="cpu",
    )
    assert result.global_step == 2 and result.data["data_format"] == "plain"
    assert result.data["dropped_prompt_too_long"] == 0
    assert result.initial_metrics["loss"] == pytest.approx(0.5, abs=0.01)  # policy = reference at step 0
    assert len(sample_answers(tmp_path / "kto", ["23+45="], 1.0, 0)) == 1


def test_the_simulator_never_imports_dagster():
    code = (
        "import sys, kto_pipeline.sim as s; s.task_split(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_pipes')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_served_model_object_is_accepted(tiny_base):
    served = load_served(tiny_base)
    assert isinstance(served, ServedModel)
    prompts = ["23+45=", "56+78="]
    assert sample_answers(served, prompts, 1.0, 4) == sample_answers(tiny_base, prompts, 1.0, 4)


def test_the_bundled_base_models_match_their_scenarios():
    from kto_pipeline.sim import SCENARIOS, bundled_base, read_base_info

    bundled = {name: bundled_base(name) for name in SCENARIOS}
    assert bundled["carry_bug"] is not None  # the main job's default must not pretrain on a fresh machine
    for name, folder in bundled.items():
        if folder is None:
            continue
        info = read_base_info(folder)
        assert info["scenario"] == name
        assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
