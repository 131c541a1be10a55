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
    from kto_pipeline.sample_data import SAMPLE_DIR

    target = tmp_path / "dumps"
    shutil.copytree(SAMPLE_DIR, target)
    return target
