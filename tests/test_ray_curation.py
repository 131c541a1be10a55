"""Curation on a real 2-node Ray cluster (LocalRayCluster: two raylets, 1 CPU each) gives the
local path's output byte for byte, survives losing a node mid-stage, and with no Ray
configured nothing imports Ray."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from ray_fixtures import ray_cluster  # noqa: F401 - the session-scoped fixture

from benchmarks.corpus import make_rows
from kto_pipeline.cluster import RayBackend, RayConfig, connect
from kto_pipeline.curate.dedup import DedupConfig, deduplicate, embed_rows
from kto_pipeline.curate.embeddings import TextEmbedder
from kto_pipeline.curate.redaction import RedactionConfig, redact
from kto_pipeline.devtools.ray_cluster import LocalRayCluster

# Small chunks and blocks, so that even a small week is several tasks on both nodes.
RAY_SETTINGS = {"minhash_rows_per_task": 40, "embedding_batches_per_task": 1}


@pytest.fixture
def connected(ray_cluster):  # noqa: F811 - pytest fixture injection
    import ray

    yield RayBackend(RayConfig(address=ray_cluster.address, **RAY_SETTINGS))
    ray.shutdown()


def _curate(rows: pd.DataFrame, backend: RayBackend | None):
    """A week's redaction (NER included) and deduplication (exact, MinHash, embeddings)."""
    redaction_config = RedactionConfig(chunk_records=15)
    redacted = redact(rows, redaction_config, mapper=backend.redaction_mapper() if backend else None)
    embedder = TextEmbedder(batch_size=16)
    encoder = backend.encoder(embedder) if backend else embedder
    result = deduplicate(
        redacted.rows,
        lambda frame: embed_rows(frame, encoder.embed),
        None,
        DedupConfig(embedding_model=encoder.name),
        signatures=backend.row_signatures() if backend else None,
    )
    return redacted, result


@pytest.mark.slow  # about 3 minutes on 2 shared cores: NER on both paths
def test_a_weeks_curation_on_two_ray_nodes_is_byte_identical_to_the_local_path(connected):
    import ray

    rows = make_rows(150, seed=11)
    local_redacted, local = _curate(rows, None)
    ray_redacted, on_ray = _curate(rows, connected)

    # Both nodes did work (each has one CPU, and the stages were several tasks).
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    pd.testing.assert_frame_equal(ray_redacted.rows, local_redacted.rows, check_exact=True)
    assert ray_redacted.entities_found == local_redacted.entities_found
    assert sum(local_redacted.entities_found.values()) > 0, "the week should contain PII to redact"
    pd.testing.assert_frame_equal(on_ray.kept, local.kept, check_exact=True)
    pd.testing.assert_frame_equal(on_ray.dropped, local.dropped, check_exact=True)
    assert on_ray.counts == local.counts
    assert local.counts["near_duplicate"] > 0 and local.counts["kept"] < len(rows)
    assert on_ray.kept_embeddings.dtype == np.float32
    assert on_ray.kept_embeddings.tobytes() == local.kept_embeddings.tobytes()
    assert on_ray.week_history.minhash_prompt.tobytes() == local.week_history.minhash_prompt.tobytes()
    assert on_ray.week_history.minhash_completion.tobytes() == local.week_history.minhash_completion.tobytes()


def test_ray_encoder_embeds_repeated_texts_once_with_the_local_embedders_bytes(connected):
    texts = ["same text", "another, longer text here", "same text", "x"]
    local = TextEmbedder(batch_size=2).embed(texts)
    on_ray = connected.encoder(TextEmbedder(batch_size=2)).embed(texts)
    assert on_ray.tobytes() == local.tobytes()
    assert on_ray[0].tobytes() == on_ray[2].tobytes()


@pytest.mark.slow  # about 1.5 minutes: its own cluster, and the dead node's detection
def test_losing_the_worker_node_mid_redaction_still_gives_the_local_output():
    import ray

    rows = make_rows(1500, seed=5)
    # Patterns only (no NER models to load): many short tasks, so the kill lands mid-stage.
    config = RedactionConfig(ner=False, rampart=False, chunk_records=20)
    expected = redact(rows, config)
    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        backend = RayBackend(RayConfig(address=cluster.address, max_retries=5))
        connect(backend.config)  # here, not in the stage's thread
        baseline = set(cluster.worker_pids())
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["result"] = redact(rows, config, mapper=backend.redaction_mapper())
            except BaseException as exc:  # reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        # Kill once the worker node runs a task: a worker process of its own has appeared.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (set(cluster.worker_pids()) - baseline):
            time.sleep(0.2)
        assert set(cluster.worker_pids()) - baseline, "the worker node never started a task"
        time.sleep(1.0)
        assert thread.is_alive(), "the stage finished before the node could be killed; use more rows"
        killed = cluster.kill_worker_node()
        assert killed
        thread.join(timeout=300)
        try:
            # The GCS marks the node dead only once its health checks time out, which can come
            # after the retried tasks have already finished on the head: wait for it.
            cluster.wait_for_nodes(1, timeout_s=90)
        finally:
            ray.shutdown()
    assert not thread.is_alive(), "the stage hung after the node was lost"
    assert "error" not in outcome, f"the stage failed after the node was lost: {outcome.get('error')!r}"
    result = outcome["result"]
    pd.testing.assert_frame_equal(result.rows, expected.rows, check_exact=True)
    assert result.entities_found == expected.entities_found


def test_with_no_ray_configured_the_local_path_never_imports_ray(tmp_path):
    script = """
import json, sys
from benchmarks.corpus import make_rows
from kto_pipeline.cluster import RayConfig
from kto_pipeline.curate.dedup import DedupConfig, deduplicate, embed_rows
from kto_pipeline.curate.embeddings import TextEmbedder
from kto_pipeline.curate.redaction import RedactionConfig, redact
from resources.ray_cluster import RayCluster

resource = RayCluster()
assert resource.backend() is None and not RayConfig().enabled
rows = make_rows(40, seed=1)
redacted = redact(rows, RedactionConfig(ner=False, rampart=False))
embedder = TextEmbedder()
result = deduplicate(redacted.rows, lambda f: embed_rows(f, embedder.embed), None, DedupConfig(embedding_model=embedder.name))
print(json.dumps({"ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")), "kept": result.counts["kept"]}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=str(_project_root())
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["kept"] > 0
    assert report["ray"] == []


def _project_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_the_ray_cluster_resource_hands_steps_the_cluster_backend_and_is_off_by_default(ray_cluster):  # noqa: F811
    import dagster as dg

    from kto_pipeline.curate.dedup import row_signatures
    from resources.ray_cluster import RayCluster

    prompts, completions = ["how do I reset my password today"] * 3, ["open settings then profile and reset"] * 3
    seen: dict = {}

    @dg.asset
    def signed(ray_cluster: RayCluster) -> None:
        backend = ray_cluster.backend()
        seen["backend"] = backend
        if backend is not None:
            import ray

            seen["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
            seen["signatures"] = backend.row_signatures()(prompts, completions, 128, 1, 5)

    assert dg.materialize([signed], resources={"ray_cluster": RayCluster()}).success
    assert seen["backend"] is None

    on = RayCluster(address=ray_cluster.address, minhash_rows_per_task=1)
    assert dg.materialize([signed], resources={"ray_cluster": on}).success
    assert seen["nodes"] == 2
    expected = row_signatures(prompts, completions, 128, 1, 5)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(seen["signatures"], expected, strict=True))


def test_deita_scoring_batches_on_the_cluster_give_the_local_scores(connected, tmp_path):
    from kto_pipeline.curate.deita.backends import TransformersScoreBackend
    from kto_pipeline.curate.deita.scorer import DeitaScorer
    from kto_pipeline.devtools.tiny_models import build_tiny_causal_lm

    model = str(build_tiny_causal_lm(tmp_path / "scorer"))
    rows = make_rows(40, seed=2)
    backend = TransformersScoreBackend(model, device="cpu", batch_size=4, max_length=256)
    local = DeitaScorer(backend, backend).score(rows)
    on_ray = connected.scorer(DeitaScorer(backend, backend)).score(rows)
    pd.testing.assert_frame_equal(on_ray.scores, local.scores, check_exact=True)
    assert on_ray.info["complexity_stats"]["batches"] == local.info["complexity_stats"]["batches"] > 1
    assert local.scores["evol_score"].nunique() > 1


@pytest.mark.slow  # about 3 minutes on 2 shared cores: two sample weeks, NER, on both paths
def test_the_curation_assets_on_the_cluster_write_the_same_files_as_on_one_machine(
    sample_dumps,
    tmp_path,
    ray_cluster,  # noqa: F811
):
    import dagster as dg

    from assets.dedup import deduplicated_feedback
    from assets.ingest import raw_feedback
    from assets.redact import redacted_feedback
    from conftest import checks, curation_resources
    from kto_pipeline.devtools.sample_data import WEEKS
    from resources import RayCluster

    tables = {}
    for name, cluster in (
        ("local", RayCluster()),
        ("ray", RayCluster(address=ray_cluster.address, minhash_rows_per_task=16, embedding_batches_per_task=1)),
    ):
        storage = tmp_path / name
        resources = {**curation_resources(sample_dumps, storage), "ray_cluster": cluster}
        for week in WEEKS[:2]:  # the second week deduplicates against the first's history
            result = dg.materialize(
                [raw_feedback, redacted_feedback, deduplicated_feedback], partition_key=week, resources=resources
            )
            assert result.success
            assert checks(result)[("redacted_feedback", "no_pii_left")].passed  # the re-scan ran there too
            meta = result.asset_materializations_for_node("redacted_feedback")[0].metadata
            assert meta["ray_cluster"].value == (ray_cluster.address if name == "ray" else "off")
        tables[name] = {str(p.relative_to(storage)): pd.read_parquet(p) for p in sorted(storage.rglob("*.parquet"))}
    assert tables["local"] and tables["local"].keys() == tables["ray"].keys()
    for path, frame in tables["local"].items():
        pd.testing.assert_frame_equal(tables["ray"][path], frame, check_exact=True)
