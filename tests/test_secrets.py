"""Secrets reach the code only through environment variables (Dagster EnvVar): never stored in
config files, the instance (run config, event log, metadata) or the warehouse."""

import re
import subprocess

import dagster as dg
import pytest
import torch
from test_scoring import FakeVLLM
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import PROJECT
from kto_pipeline.devtools.sample_data import WEEKS
from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm

SECRET = "sk-kto-test-5f3c9a1be07d4c2a"


def _files_containing(root, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_an_api_key_from_the_environment_is_used_but_never_stored(sample_dumps, tmp_path, monkeypatch):
    from assets.dedup import deduplicated_feedback
    from assets.ingest import raw_feedback
    from assets.redact import redacted_feedback
    from assets.score import scored_feedback
    from definitions import deita_scorer_from_env
    from resources import DedupHistoryStore, Embedder, FeedbackSource, ParquetIOManager, PiiRedactor, RayCluster

    model_dir = build_tiny_causal_lm(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.set_num_threads(1)
    storage, home = tmp_path / "warehouse", tmp_path / "dagster_home"
    home.mkdir()
    with FakeVLLM(tokenizer, model) as server:
        monkeypatch.setenv("KTO_PIPELINE_SCORER_BACKEND", "openai")
        monkeypatch.setenv("KTO_PIPELINE_SCORER_COMPLEXITY_MODEL", "tiny")
        monkeypatch.setenv("KTO_PIPELINE_SCORER_QUALITY_MODEL", "tiny")
        monkeypatch.setenv("KTO_PIPELINE_SCORER_BASE_URL", server.url)
        monkeypatch.setenv("KTO_PIPELINE_SCORER_API_KEY", SECRET)
        scorer = deita_scorer_from_env()
        # The resource holds the variable's name; Dagster reads its value when the run starts.
        assert isinstance(scorer.api_key, dg.EnvVar) and scorer.api_key.env_var_name == "KTO_PIPELINE_SCORER_API_KEY"
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            result = dg.materialize(
                [raw_feedback, redacted_feedback, deduplicated_feedback, scored_feedback],
                partition_key=WEEKS[0],
                instance=instance,
                resources={
                    "io_manager": ParquetIOManager(base_path=str(storage)),
                    "feedback_source": FeedbackSource(location=str(sample_dumps)),
                    "pii": PiiRedactor(),
                    "embedder": Embedder(),
                    "ray_cluster": RayCluster(),
                    "dedup_history": DedupHistoryStore(base_path=str(storage / "dedup_history")),
                    "deita_scorer": scorer,
                },
            )
            assert result.success
            logs = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
            run = instance.get_run_by_id(result.run_id)
            stored = str(run.run_config) + str(run.tags)
    # The key was really used: every request to the server carried it.
    assert server.authorizations and set(server.authorizations) == {f"Bearer {SECRET}"}
    meta = result.asset_materializations_for_node("scored_feedback")[0].metadata
    assert meta["deita_scorer"].value.startswith("ran:")
    # …and is nowhere Dagster or the pipeline wrote: event log, run record, SQLite files, warehouse.
    assert SECRET not in logs and SECRET not in stored
    assert _files_containing(home, SECRET.encode()) == []
    assert _files_containing(storage, SECRET.encode()) == []


_CREDENTIAL = re.compile(
    r"""(api[_-]?key|password|passwd|secret|token)["']?\s*[:=]\s*["']?(?!\$|\{|None\b|null\b|EnvVar|os\.environ|env\b)[A-Za-z0-9_\-./+]{6,}""",
    re.IGNORECASE,
)


def test_no_credentials_in_committed_configuration():
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    config_files = [
        PROJECT / f
        for f in tracked.stdout.split()
        if f.endswith((".yaml", ".yml", ".toml", ".json", ".cfg", ".ini", ".env"))
    ]
    assert any(f.name == "dagster.yaml" for f in config_files)
    hits = [
        f"{f.relative_to(PROJECT)}: {m.group(0)}"
        for f in config_files
        if f.is_file()
        for m in _CREDENTIAL.finditer(f.read_text(errors="replace"))
    ]
    assert hits == []
