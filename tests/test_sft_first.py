"""The SFT-then-KTO recipe (`sft_first`): TRL's SFTTrainer on the week's desirable rows, then
KTO from that model, judged against it. On a tiny random Llama, a few steps each."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm
from kto_pipeline.models.manifest import read_manifest
from kto_pipeline.train import KTORecipe, train_kto

WEEK = "2026-W01"
RECIPE = dict(
    max_steps=3,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    logging_steps=1,
    save_steps=100,
    learning_rate=5e-3,
    max_length=64,
)


def rows(n: int, seed: int, desirable_share: float = 0.5) -> pd.DataFrame:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = rng.random() < desirable_share
        # Desirable answers share one short pattern the SFT stage can learn in a few steps.
        completion = "the answer is blue" if label else " ".join(rng.choice("abcdefgh") for _ in range(6))
        out.append(
            {"row_id": f"r{i}", "week": WEEK, "prompt": f"Question {i % 7}?", "completion": completion, "label": label}
        )
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny"))


def train(tmp_path, base_model, data, recipe, name, init_from=None):
    return train_kto(
        data,
        base_model=base_model,
        init_from=init_from,
        output_dir=tmp_path / name,
        work_dir=tmp_path / f"{name}-work",
        recipe=recipe,
        lineage={"weeks": [WEEK]},
        device="cpu",
    )


@pytest.mark.parametrize("full_finetune", [True, False], ids=["full", "lora"])
def test_kto_starts_from_and_is_judged_against_the_sft_model(tmp_path, base_model, full_finetune):
    data = rows(40, seed=1)
    n_desirable = int(data["label"].sum())
    plain = train(tmp_path, base_model, data, {**RECIPE, "full_finetune": full_finetune}, "plain")
    recipe = {**RECIPE, "full_finetune": full_finetune, "sft_first": True, "sft_epochs": 3.0}
    sft = train(tmp_path, base_model, data, recipe, "sft")

    metrics = sft.final_metrics
    assert metrics["sft_rows"] == n_desirable  # the desirable rows only
    assert metrics["sft_steps"] == 3 * -(-n_desirable // 4)
    assert metrics["sft_loss_last"] < metrics["sft_loss_first"]
    # KTO began at the SFT model: the desirable answers are far likelier there than at the base...
    assert sft.initial_metrics["logps/chosen"] > plain.initial_metrics["logps/chosen"] + 1.0
    # ...and that model is also the reference: rewards start at zero, as KTO needs.
    assert sft.health["reference_check"]["ok"] and sft.health["healthy"]
    assert abs(sft.initial_metrics["loss"] - 0.5) < 1e-4
    manifest = read_manifest(tmp_path / "sft")
    assert manifest.init_from is None and manifest.recipe["sft_first"] is True
    assert manifest.kind == ("full" if full_finetune else "lora") and manifest.global_step == 3
    assert manifest.timings["sft"] > 0
    # The stage's own folder is scratch: gone once the week's checkpoint is written.
    assert not (tmp_path / "sft-work" / "sft").exists()
    assert sft.fingerprint != plain.fingerprint


def test_a_rerun_of_the_same_week_reuses_the_checkpoint(tmp_path, base_model):
    data = rows(24, seed=2)
    recipe = {**RECIPE, "full_finetune": True, "sft_first": True}
    first = train(tmp_path, base_model, data, recipe, "w")
    again = train(tmp_path, base_model, data, recipe, "w")
    assert again.reused and again.fingerprint == first.fingerprint and again.global_step == first.global_step


def test_a_week_without_desirable_rows_trains_kto_alone_and_says_so(tmp_path, base_model):
    data = rows(16, seed=3, desirable_share=0.0)
    result = train(tmp_path, base_model, data, {**RECIPE, "full_finetune": True, "sft_first": True}, "none")
    assert result.global_step == 3 and result.final_metrics["sft_rows"] == 0
    assert result.final_metrics["sft_steps"] == 0 and result.health["reference_check"]["ok"]


def test_sft_settings_are_checked():
    with pytest.raises(ValueError, match="sft_epochs"):
        KTORecipe.from_dict({"sft_epochs": 0})
    with pytest.raises(ValueError, match="sft_learning_rate"):
        KTORecipe.from_dict({"sft_learning_rate": -1.0})
    assert KTORecipe().sft_first is False  # production default until measured otherwise


def test_the_sft_stage_batches_by_length_when_the_recipe_buckets(tmp_path):
    from kto_pipeline.train.sft_stage import sft_config

    def strategy(bucketing: bool) -> str:
        recipe = KTORecipe.from_dict({"sft_first": True, "length_bucketing": bucketing})
        return sft_config(recipe, trainer_dir=tmp_path, use_cpu=True, bf16=False).train_sampling_strategy

    # KTO keeps our block order; SFT reshuffles each epoch, so it asks transformers for length groups.
    assert strategy(True) == "group_by_length" and strategy(False) == "random"
