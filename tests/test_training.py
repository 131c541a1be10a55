"""The KTO training library on a tiny random Llama: folder format, reference model, resume,
length bucketing, determinism, health checks and the distributed entry point.

Trainings are a few steps on 36-48 rows; module-scoped fixtures share the expensive ones.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm
from kto_pipeline.models.manifest import read_manifest
from kto_pipeline.train import (
    CollapseDetector,
    KTORecipe,
    TrainLineage,
    TrainSpec,
    length_bucket_order,
    make_health_callback,
    padding_fraction,
    prepare_records,
    train_kto,
)

PROJECT = Path(__file__).resolve().parent.parent
WEEK1, WEEK2 = "2026-W01", "2026-W02"
# High learning rate so that a few steps move the adapter far from the base: the chain test
# needs a previous adapter whose model clearly differs from the bare base.
RECIPE = dict(
    max_steps=4,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    logging_steps=1,
    save_steps=2,
    learning_rate=5e-3,
    max_length=96,
    keep_checkpoints=True,
)
TOPICS = [
    "reset my password",
    "the capital of France",
    "a poem about the sea",
    "a hash map in Python",
    "a refund email",
    "23+45",
    "the weather",
    "a sorting algorithm",
]


def make_rows(n: int, week: str, seed: int = 0, long_prompts: int = 0) -> pd.DataFrame:
    """Contract-shaped rows, shuffled, with varied lengths; `long_prompts` rows overflow max_length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n + long_prompts):
        topic = TOPICS[i % len(TOPICS)]
        prompt = f"Tell me about {topic}." if i < n else "Explain everything about " + " and ".join(TOPICS * 6)
        label = rng.random() < 0.55
        words = " ".join(
            rng.choice(["sure", "here", "is", "the", "answer", "paris", "blue", "sea", "1", "2"])
            for _ in range(rng.randint(2, 24))
        )
        rows.append(
            {
                "row_id": f"{week}-{i}",
                "week": week,
                "prompt": prompt,
                "prompt_messages": json.dumps([{"role": "user", "content": prompt}]),
                "completion": f"{'Good' if label else 'Bad'}: {words}",
                "label": label,
                "signal": "thumb" if i % 5 else "edit",
                "source": "production" if i % 4 else "synthetic",
            }
        )
    rng.shuffle(rows)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def week1_rows() -> pd.DataFrame:
    return make_rows(40, WEEK1, seed=1, long_prompts=2)


@pytest.fixture(scope="module")
def week1(tmp_path_factory, base_model, week1_rows):
    root = tmp_path_factory.mktemp("week1")
    logs: list[dict] = []
    result = train_kto(
        week1_rows,
        base_model=base_model,
        output_dir=root / "out",
        work_dir=root / "work",
        recipe=RECIPE,
        desirable_weight=1.0,
        undesirable_weight=1.2,
        lineage={"weeks": [WEEK1], "dataset": "balanced_feedback"},
        on_log=logs.append,
        device="cpu",
    )
    return SimpleNamespace(result=result, logs=logs, root=root)


def adapter_tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() == 0.0, key


# --------------------------------------------------------------------------------------------
# Recipe and data preparation (no training)
# --------------------------------------------------------------------------------------------


def test_the_library_never_imports_dagster():
    code = (
        "import sys, kto_pipeline.train as t; t.KTORecipe(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_pipes')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_recipe_defaults_follow_the_paper_and_trl():
    r = KTORecipe()
    assert (r.loss_type, r.beta, r.learning_rate, r.warmup_ratio, r.max_length) == ("kto", 0.1, 5e-6, 0.1, 1024)
    assert (r.lora_r, r.lora_alpha, r.lora_dropout, r.lora_target_modules, r.full_finetune) == (
        16,
        32,
        0.05,
        "all-linear",
        False,
    )
    assert (r.per_device_train_batch_size, r.gradient_accumulation_steps, r.num_train_epochs, r.max_steps) == (
        8,
        4,
        1.0,
        None,
    )
    assert r.precompute_ref_log_probs and r.length_bucketing and not r.gradient_checkpointing
    assert (r.save_steps, r.save_total_limit, r.seed, r.collapse_patience) == (50, 2, 0, 3)


def test_recipe_overrides_from_a_dict_and_rejects_bad_values():
    r = KTORecipe.from_dict({"beta": 0.25, "full_finetune": True, "max_steps": 10})
    assert (r.beta, r.kind, r.max_steps, r.learning_rate) == (0.25, "full", 10, 5e-6)
    with pytest.raises(ValueError, match="unknown recipe field"):
        KTORecipe.from_dict({"betta": 0.2})
    with pytest.raises(ValueError, match="lm_head"):
        KTORecipe.from_dict({"lora_target_modules": ["q_proj", "lm_head"]})
    with pytest.raises(ValueError, match="≥ 2"):
        KTORecipe.from_dict({"per_device_train_batch_size": 1})


def test_recipe_fields_are_documented():
    import dataclasses

    undocumented = [f.name for f in dataclasses.fields(KTORecipe) if not f.metadata.get("help")]
    assert not undocumented, undocumented


def test_a_train_spec_round_trips_through_json_and_names_bad_keys():
    spec = TrainSpec(
        train_rows="rows.parquet",
        base_model="base",
        output_dir="out",
        work_dir="work",
        recipe={"beta": 0.5},
        desirable_weight=1.0,
        undesirable_weight=1.3,
        lineage=TrainLineage(
            week=WEEK1,
            weeks=[WEEK1],
            rows=10,
            desirable=4,
            undesirable=6,
            sources={"production": 10},
            init="the base model",
        ),
    )
    assert TrainSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["lineage"]["sources"] == {"production": 10}
    minimal = TrainSpec.from_dict({"train_rows": "r", "base_model": "b", "output_dir": "o", "work_dir": "w"})
    assert minimal.recipe == {} and minimal.lineage is None and minimal.desirable_weight == 1.0
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['wrk_dir'\]; missing key\(s\) \['work_dir'\]"):
        TrainSpec.from_dict({"train_rows": "r", "base_model": "b", "output_dir": "o", "wrk_dir": "w"})
    with pytest.raises(ValueError, match=r"training lineage: missing key\(s\) \['desirable'"):
        TrainSpec.from_dict({**json.loads(spec.to_json()), "lineage": {"week": WEEK1, "weeks": [WEEK1]}})


def test_a_manifest_keeps_its_writers_keys_and_unknown_ones(tmp_path):
    from kto_pipeline.models.manifest import MANIFEST, CheckpointManifest, write_manifest

    sft = {
        "kind": "full",
        "arm": "sft_positives",
        "base_model": "b",
        "init_from": "b",
        "weeks": [WEEK1],
        "global_step": 3,
        "recipe": {"lr": 1e-4},
        "rows": {"train": 5},
        "metrics": {"loss_last": 1.5},
        "health": {"healthy": True, "collapse": {"collapsed": False}},
        "fingerprint": "f",
        "timings": {"total": 1.0},
        "from_a_newer_writer": {"x": 1},
    }
    (tmp_path / MANIFEST).write_text(json.dumps(sft, indent=1, sort_keys=True))
    manifest = read_manifest(tmp_path)
    assert manifest.kto is None and manifest.arm == "sft_positives" and manifest.collapse is None
    assert manifest.extra == {"from_a_newer_writer": {"x": 1}}
    before = (tmp_path / MANIFEST).read_bytes()
    write_manifest(tmp_path, manifest)
    assert (tmp_path / MANIFEST).read_bytes() == before  # no key added or lost
    with pytest.raises(ValueError, match="base_model"):
        CheckpointManifest.from_dict({"kind": "lora"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_buckets_keep_blocks_together_and_rows_unchanged(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 300) for _ in range(53)]
    order = length_bucket_order(lengths, 8, seed=seed)
    assert sorted(order) == list(range(53))  # a permutation: no row lost or repeated
    by_length = sorted(range(53), key=lambda i: (lengths[i], i))
    expected_blocks = {tuple(by_length[i : i + 8]) for i in range(0, 48, 8)}
    got_blocks = [tuple(order[i : i + 8]) for i in range(0, 48, 8)]
    assert set(got_blocks) == expected_blocks  # every block is one run of similar lengths
    assert order[48:] == by_length[48:]  # the short remainder stays last, aligned with TRL's batches
    assert got_blocks != sorted(got_blocks, key=lambda b: lengths[b[0]])  # blocks are shuffled...
    assert order == length_bucket_order(lengths, 8, seed=seed)  # ...deterministically
    assert padding_fraction([lengths[i] for i in order], 8) < padding_fraction(lengths, 8)


def test_prepare_records_bucketing_keeps_the_row_multiset(base_model):
    from kto_pipeline.models.checkpoints import load_tokenizer

    tok = load_tokenizer(base_model)
    rows = make_rows(37, WEEK1, seed=3)
    recipe = KTORecipe.from_dict({"per_device_train_batch_size": 4, "max_length": 96})
    bucketed = prepare_records(rows, tok, recipe)
    plain_order = prepare_records(rows, tok, recipe, bucket=False)
    key = lambda rec: json.dumps(rec, sort_keys=True)  # noqa: E731
    assert sorted(map(key, bucketed.records)) == sorted(map(key, plain_order.records))
    assert plain_order.source_index == list(range(37))
    assert bucketed.padding_fraction < bucketed.padding_fraction_unbucketed
    for i in range(0, 36, 4):  # each block spans a narrow slice of the sorted lengths
        block = bucketed.lengths[i : i + 4]
        assert sum(1 for x in bucketed.lengths if min(block) < x < max(block)) <= 4


def test_prepare_records_formats_and_drops_overlong_prompts(base_model):
    from kto_pipeline.models.checkpoints import load_tokenizer

    tok = load_tokenizer(base_model)
    recipe = KTORecipe.from_dict({"per_device_train_batch_size": 4, "max_length": 96})
    rows = make_rows(10, WEEK1, long_prompts=3)
    conv = prepare_records(rows, tok, recipe)
    assert conv.data_format == "conversational" and conv.dropped_prompt_too_long == 3 and len(conv.records) == 10
    assert conv.records[0]["prompt"][0]["role"] == "user" and conv.records[0]["completion"][0]["role"] == "assistant"

    mixed = rows.copy()
    mixed.loc[::2, "prompt_messages"] = None  # plain rows join as a single user message
    mixed_prep = prepare_records(mixed, tok, recipe)
    assert mixed_prep.data_format == "conversational"
    assert all(isinstance(r["prompt"], list) for r in mixed_prep.records)

    plain = prepare_records(rows.assign(prompt_messages=None), tok, recipe)
    assert plain.data_format == "plain" and isinstance(plain.records[0]["prompt"], str)
    assert plain.dropped_prompt_too_long == 3


# --------------------------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------------------------


def _log(chosen, rejected, loss=0.5):
    return {"loss": loss, "rewards/chosen": chosen, "rewards/rejected": rejected}


def test_collapse_detector_fires_when_both_rewards_fall_together():
    det = CollapseDetector(patience=3)
    seq = [(0.0, 0.0), (-0.5, -0.6), (-2.0, -2.5), (-4.0, -4.4), (-6.5, -7.0)]
    fired = [det.update(step, _log(c, r)) for step, (c, r) in enumerate(seq, start=1)]
    assert fired == [False, False, False, True, True]
    report = det.report()
    assert report["collapsed"] and "fell together" in report["reason"]
    assert [e["step"] for e in report["evidence"]] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "seq",
    [
        [(0.0, 0.0), (0.1, -0.2), (0.2, -0.5), (0.25, -0.9), (0.3, -1.4)],  # healthy: margins open
        [(0.0, 0.0), (-0.1, -0.2), (-0.2, -0.4), (-0.1, -0.6), (-0.2, -0.8)],  # streak broken by a rise
        [(0.9, 0.5), (0.8, 0.3), (0.7, 0.1), (0.6, -0.1), (0.5, -0.3)],  # desirable still above the reference
    ],
)
def test_collapse_detector_stays_quiet_on_healthy_runs(seq):
    det = CollapseDetector(patience=3)
    assert not any(det.update(step, _log(c, r)) for step, (c, r) in enumerate(seq, start=1))
    assert not det.report()["collapsed"]


def test_the_drop_floor_is_in_log_ratio_units():
    # Seen in a healthy simulator week at β = 2: both rewards slipping by hundredths of a nat.
    seq = [(0.0, 0.0), (-0.128, -0.144), (-0.205, -0.156), (-0.355, -0.175), (-0.41, -0.19)]
    quiet = CollapseDetector(patience=3, min_drop=0.05, beta=2.0)
    assert not any(quiet.update(step, _log(c, r)) for step, (c, r) in enumerate(seq, start=1))
    collapse = [(0.0, 0.0), (-0.5, -0.6), (-2.0, -2.5), (-4.0, -4.4), (-6.5, -7.0)]
    loud = CollapseDetector(patience=3, min_drop=0.05, beta=2.0)
    assert [loud.update(step, _log(c, r)) for step, (c, r) in enumerate(collapse, start=1)][-1]


def test_non_finite_loss_is_divergence():
    det = CollapseDetector(patience=3)
    assert det.update(1, _log(0.0, 0.0, loss=float("nan")))
    assert det.report()["collapsed"] and "diverged" in det.report()["reason"]


def test_health_callback_forwards_logs_and_stops_training():
    seen = []
    det = CollapseDetector(patience=2)
    cb = make_health_callback(det, seen.append, stop_on_collapse=True)
    state = SimpleNamespace(global_step=0, epoch=0.0, is_world_process_zero=True, log_history=[])
    control = SimpleNamespace(should_training_stop=False)
    for step, (c, r) in enumerate([(0.0, 0.0), (-1.0, -1.0), (-2.0, -2.5)], start=1):
        state.global_step = step
        cb.on_log(None, state, control, logs=_log(c, r))
    assert [e["step"] for e in seen] == [1, 2, 3] and seen[-1]["rewards/chosen"] == -2.0
    assert control.should_training_stop and det.collapsed


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def test_lora_week_writes_a_complete_checkpoint_folder(week1, base_model, week1_rows):
    res, out = week1.result, Path(week1.result.output_dir)
    assert res.kind == "lora" and res.global_step == 4 and res.healthy and not res.collapsed
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "kto_checkpoint.json",
        "log_history.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "ref").exists()  # only the trained adapter, never TRL's reference copy
    assert not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())  # no staging left over

    manifest = read_manifest(out)
    run = manifest.kto
    assert manifest.kind == "lora" and manifest.base_model == base_model and manifest.init_from is None
    assert manifest.weeks == [WEEK1] and manifest.global_step == 4 and run.resumed_from_step is None
    kept = week1_rows[~week1_rows["prompt"].str.startswith("Explain everything")]
    assert manifest.rows["train"] == 40 and run.data["dropped_prompt_too_long"] == 2
    assert manifest.rows["desirable"] == int(kept["label"].sum())
    assert manifest.rows["undesirable"] == int((~kept["label"]).sum())
    assert run.weights == {"desirable": 1.0, "undesirable": 1.2, "ratio": run.weights["ratio"]}
    assert manifest.recipe["learning_rate"] == 5e-3 and manifest.recipe["lora_r"] == 16
    assert run.lineage["dataset"] == "balanced_feedback" and manifest.health["healthy"]
    assert sum(run.data["per_source"].values()) == 40 and set(run.data["per_signal"]) == {"thumb", "edit"}
    assert run.log_history_summary["n_train_logs"] == 4

    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert (
        f'base_model: "{base_model}"' in front
        and "library_name: peft" in front
        and "- kto" in front
        and "- trl" in front
    )
    assert WEEK1 in card and "production" in card and "λU = 1.2" in card and "learning_rate" in card


def test_a_trained_manifest_is_rewritten_byte_for_byte(week1, tmp_path):
    from kto_pipeline.models.manifest import MANIFEST, write_manifest

    out = Path(week1.result.output_dir)
    manifest = read_manifest(out)
    assert manifest.extra == {}  # every key the trainer writes is a declared field
    write_manifest(tmp_path, manifest)
    assert (tmp_path / MANIFEST).read_bytes() == (out / MANIFEST).read_bytes()


def test_lora_week_logs_start_at_the_reference(week1):
    res = week1.result
    train_logs = [e for e in res.log_history if "loss" in e]
    assert [e["step"] for e in train_logs] == [1, 2, 3, 4]
    keys = set().union(*train_logs)
    for key in (
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "kl",
        "grad_norm",
        "logps/chosen",
        "num_tokens",
    ):
        assert key in keys, key
    # Policy = reference at step 0: rewards 0, loss = weighted mean of 0.5·λ (λD=1, λU=1.2).
    first = next(e for e in res.log_history if "loss" in e)
    assert first["step"] == 1
    assert max(abs(first.get(k, 0.0)) for k in ("rewards/chosen", "rewards/rejected")) < 1e-5
    assert 0.5 <= first["loss"] <= 0.6 + 1e-6
    assert res.health["reference_check"]["ok"]
    assert res.final_metrics["rewards/chosen"] != 0.0  # and training moved it
    assert [e["step"] for e in week1.logs if "loss" in e][:4] == [1, 2, 3, 4]  # on_log saw the live logs


def test_two_runs_on_the_same_data_give_the_same_adapter(tmp_path, week1, base_model, week1_rows):
    again = train_kto(
        week1_rows,
        base_model=base_model,
        output_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
        recipe=RECIPE,
        desirable_weight=1.0,
        undesirable_weight=1.2,
        lineage={"weeks": [WEEK1]},
        device="cpu",
    )
    assert again.fingerprint == week1.result.fingerprint
    assert_same_tensors(adapter_tensors(again.output_dir), adapter_tensors(week1.result.output_dir))


def test_an_interrupted_run_resumes_to_the_same_end(tmp_path, week1, base_model, week1_rows):
    from transformers import TrainerCallback

    class Killed(RuntimeError):
        pass

    class KillAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed()

    kwargs = dict(
        base_model=base_model,
        output_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
        recipe=RECIPE,
        desirable_weight=1.0,
        undesirable_weight=1.2,
        lineage={"weeks": [WEEK1]},
        device="cpu",
    )
    with pytest.raises(Killed):
        train_kto(week1_rows, callbacks=[KillAtStep3()], **kwargs)
    assert not (tmp_path / "out").exists()  # nothing that looks finished
    assert (tmp_path / "work" / "trainer" / "checkpoint-2" / "trainer_state.json").is_file()

    resumed = train_kto(week1_rows, **kwargs)
    assert resumed.resumed_from_step == 2 and resumed.global_step == week1.result.global_step == 4
    assert read_manifest(tmp_path / "out").kto.resumed_from_step == 2
    assert_same_tensors(adapter_tensors(tmp_path / "out"), adapter_tensors(week1.result.output_dir))


def test_a_work_dir_from_other_data_starts_fresh(tmp_path, week1, base_model):
    work = Path(week1.root) / "work"  # week1 kept its checkpoints (keep_checkpoints=True)
    assert (work / "trainer" / "checkpoint-4").is_dir()
    other = make_rows(32, WEEK1, seed=9)
    res = train_kto(
        other,
        base_model=base_model,
        output_dir=tmp_path / "out",
        work_dir=work,
        recipe={**RECIPE, "max_steps": 2},
        lineage={"weeks": [WEEK1]},
        device="cpu",
    )
    assert res.resumed_from_step is None and res.global_step == 2
    assert not (work / "trainer" / "checkpoint-4").exists()


def _completion_logps(model, tokenizer, records, max_length: int) -> list[float]:
    """Summed completion log-probs, tokenised and truncated the way TRL 1.16 does it."""
    import torch
    from trl.data_utils import _tokenize, common_prefix_length

    out = []
    for rec in records:
        prompt_ids = _tokenize(tokenizer, rec["prompt"], add_generation_prompt=True)["input_ids"]
        full = _tokenize(tokenizer, rec["prompt"] + rec["completion"])["input_ids"]
        start = common_prefix_length(prompt_ids, full)
        ids = torch.tensor([full[:max_length]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        token_logp = logp.gather(-1, ids[0, 1:, None])[:, 0]
        out.append(token_logp[start - 1 :].sum().item())
    return out


def test_next_week_continues_the_adapter_against_last_weeks_model(tmp_path, week1, base_model):
    from kto_pipeline.models.checkpoints import load_causal_lm, load_tokenizer

    week2_rows, eval_rows = make_rows(36, WEEK2, seed=2), make_rows(12, WEEK2, seed=5)
    res = train_kto(
        week2_rows,
        base_model=base_model,
        init_from=week1.result.output_dir,
        output_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
        recipe=RECIPE,
        lineage={"weeks": [WEEK2]},
        eval_rows=eval_rows,
        device="cpu",
    )
    first = next(e for e in res.log_history if "loss" in e)  # taken at the initial weights
    rewards = [first[k] for k in ("rewards/chosen", "rewards/rejected") if k in first]
    # Policy = reference at step 0 ...
    assert rewards and max(abs(r) for r in rewards) < 1e-4
    assert abs(first["loss"] - 0.5) < 1e-4 and res.health["reference_check"]["ok"]

    # ... and that policy is last week's model, not the bare base: recompute the first
    # micro-batch's logged log-probs under both.
    tok = load_tokenizer(base_model)
    batch = prepare_records(week2_rows, tok, KTORecipe.from_dict(RECIPE)).records[
        : RECIPE["per_device_train_batch_size"]
    ]
    key, label = ("logps/chosen", True) if "logps/chosen" in first else ("logps/rejected", False)
    chosen = [r for r in batch if r["label"] is label]
    prev = _completion_logps(load_causal_lm(week1.result.output_dir), tok, chosen, RECIPE["max_length"])
    base = _completion_logps(load_causal_lm(base_model), tok, chosen, RECIPE["max_length"])
    assert first[key] == pytest.approx(sum(prev) / len(prev), rel=1e-3, abs=1e-3)
    assert abs(sum(base) / len(base) - first[key]) * 0.1 > 0.05  # a base reference would give |reward| ≫ tolerance

    manifest = read_manifest(tmp_path / "out")
    assert manifest.init_from == week1.result.output_dir and manifest.weeks == [WEEK2]
    assert manifest.kto.init_manifest["fingerprint"] == week1.result.fingerprint
    assert "eval_loss" in res.eval_metrics and "eval_rewards/margins" in res.eval_metrics
    assert not (tmp_path / "out" / "ref").exists()
    prev_w, new_w = adapter_tensors(week1.result.output_dir), adapter_tensors(tmp_path / "out")
    assert prev_w.keys() == new_w.keys()  # the same adapter, trained further
    assert any((prev_w[k] - new_w[k]).abs().max().item() > 0 for k in prev_w)


def test_lora_chain_refuses_a_foreign_init(tmp_path, base_model, week1_rows):
    with pytest.raises(ValueError, match="LoRA"):
        train_kto(
            week1_rows,
            base_model=base_model,
            init_from=base_model,
            output_dir=tmp_path / "o",
            work_dir=tmp_path / "w",
            recipe=RECIPE,
            device="cpu",
        )


def test_full_finetune_and_its_continuation(tmp_path, base_model):
    rows = make_rows(32, WEEK1, seed=4)
    recipe = {**RECIPE, "full_finetune": True, "max_steps": 2, "learning_rate": 1e-3}
    first = train_kto(
        rows,
        base_model=base_model,
        output_dir=tmp_path / "w1",
        work_dir=tmp_path / "k1",
        recipe=recipe,
        lineage={"weeks": [WEEK1]},
        device="cpu",
    )
    out = tmp_path / "w1"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    assert read_manifest(out).kind == "full" and "library_name: transformers" in (out / "README.md").read_text()
    assert first.global_step == 2 and abs(first.initial_metrics["loss"] - 0.5) < 1e-4

    second = train_kto(
        make_rows(32, WEEK2, seed=6),
        base_model=base_model,
        init_from=out,
        output_dir=tmp_path / "w2",
        work_dir=tmp_path / "k2",
        recipe=recipe,
        lineage={"weeks": [WEEK2]},
        device="cpu",
    )
    assert read_manifest(tmp_path / "w2").init_from == str(out)
    assert (
        second.health["reference_check"]["max_abs_initial_reward"] < 1e-4
        and abs(second.initial_metrics["loss"] - 0.5) < 1e-4
    )


def test_an_existing_identical_output_is_reused(week1, base_model, week1_rows):
    root = Path(week1.root)
    again = train_kto(
        week1_rows,
        base_model=base_model,
        output_dir=root / "out",
        work_dir=root / "work",
        recipe=RECIPE,
        desirable_weight=1.0,
        undesirable_weight=1.2,
        lineage={"weeks": [WEEK1]},
        device="cpu",
    )
    assert again.reused and again.global_step == 4 and again.fingerprint == week1.result.fingerprint


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_accelerate_launch(tmp_path, base_model):
    """The module entry point under `accelerate launch` with 2 CPU processes (gloo)."""
    rows = make_rows(40, WEEK1, seed=7)
    rows.to_parquet(tmp_path / "rows.parquet")
    spec = {
        "train_rows": str(tmp_path / "rows.parquet"),
        "base_model": base_model,
        "output_dir": str(tmp_path / "out"),
        "work_dir": str(tmp_path / "work"),
        "result_path": str(tmp_path / "result.json"),
        "device": "cpu",
        "recipe": {**RECIPE, "max_steps": 3},
        "lineage": {
            "week": WEEK1,
            "weeks": [WEEK1],
            "rows": 40,
            "desirable": int(rows["label"].sum()),
            "undesirable": int((~rows["label"]).sum()),
            "sources": {},
            "init": "the base model",
        },
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
    # --multi_gpu selects the torchrun-style launcher; without GPUs (or with device "cpu") the
    # processes use gloo on CPU. (`--cpu` alone starts one process unless mpirun is present.)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "kto_pipeline.train",
        "--spec",
        str(tmp_path / "spec.json"),
    ]
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.loads(line[len("KTO_LOG ") :]) for line in proc.stdout.splitlines() if line.startswith("KTO_LOG ")]
    assert [e["step"] for e in logs if "loss" in e] == [1, 2, 3]  # rank 0 only: no duplicates
    result = json.loads((tmp_path / "result.json").read_text())
    manifest = read_manifest(tmp_path / "out")
    assert result["global_step"] == 3 and manifest.kto.world_size == 2
    assert math.isclose(logs[0]["loss"], 0.5, abs_tol=1e-4)
    # 2 ranks × 4 rows per step: 3 steps cover 24 of the 40 rows
    assert math.isclose(logs[-1]["epoch"], 24 / 40, abs_tol=1e-6)


def test_adapter_config_is_written_the_same_whatever_the_hash_seed(tmp_path):
    import subprocess
    import sys

    from kto_pipeline.models.checkpoints import canonical_adapter_config

    # PEFT writes target_modules in set order, which follows PYTHONHASHSEED.
    script = (
        "import sys; from peft import LoraConfig; from kto_pipeline.models.checkpoints import canonical_adapter_config; "
        "LoraConfig(r=4, target_modules=['q_proj','k_proj','v_proj','o_proj','gate_proj','up_proj']).save_pretrained(sys.argv[1]); "
        "canonical_adapter_config(sys.argv[1]) if sys.argv[2] == '1' else None"
    )
    raw, canonical = [], []
    for seed in ("1", "2", "3"):
        for canon, out in (("0", raw), ("1", canonical)):
            folder = tmp_path / f"{seed}-{canon}"
            subprocess.run(
                [sys.executable, "-c", script, str(folder), canon],
                check=True,
                env={**os.environ, "PYTHONHASHSEED": seed},
            )
            out.append((folder / "adapter_config.json").read_bytes())
    assert len(set(raw)) > 1  # the problem is real
    assert len(set(canonical)) == 1
    canonical_adapter_config(tmp_path / "missing")  # no adapter (full fine-tune): nothing to do
