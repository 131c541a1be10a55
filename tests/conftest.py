import os
import shutil
from pathlib import Path

import pytest

# No hub traffic from any test: models come from local paths or installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sample_dumps(tmp_path):
    """A private copy of the bundled sample dumps."""
    from kto_pipeline.devtools.sample_data import SAMPLE_DIR

    target = tmp_path / "dumps"
    shutil.copytree(SAMPLE_DIR, target)
    return target


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny random causal LM on disk (a base model for training and evaluation tests)."""
    from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm

    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "base"))


def curation_resources(dumps, storage, scorer: str | None = None) -> dict:
    """The curation steps' resources over `dumps`, writing under `storage`; DEITA scoring with
    the model at `scorer`, or off (selection without scores, no model)."""
    from resources import (
        DedupHistoryStore,
        DeitaScorerResource,
        Embedder,
        FeedbackSource,
        ParquetIOManager,
        PiiRedactor,
        RayCluster,
    )

    return {
        "io_manager": ParquetIOManager(base_path=str(storage)),
        "feedback_source": FeedbackSource(location=str(dumps)),
        "pii": PiiRedactor(),
        "embedder": Embedder(),
        "ray_cluster": RayCluster(),
        "dedup_history": DedupHistoryStore(base_path=str(storage / "dedup_history")),
        "deita_scorer": DeitaScorerResource(
            backend="transformers", complexity_model=scorer, quality_model=scorer, device="cpu"
        )
        if scorer
        else DeitaScorerResource(),
    }


def materialization_metadata(result, key: str) -> dict:
    """The plain metadata values of the run's one materialization of asset `key`."""
    import dagster as dg

    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def checks(result) -> dict:
    """A run's asset check evaluations by (asset, check name)."""
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def assert_rows_accounted(result, *assets: str) -> None:
    """Each named step's `rows_accounted` check ran in the run and passed."""
    found = checks(result)
    for asset in assets:
        evaluation = found.get((asset, "rows_accounted"))
        assert evaluation is not None, f"{asset}: no rows_accounted evaluation"
        assert evaluation.passed, f"{asset}: {evaluation.description}"
