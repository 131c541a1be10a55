"""The embedder's ONNX Runtime backends: exported locally from the bundled weights, cached,
and close to sentence-transformers' torch vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kto_pipeline.curate.embeddings import EmbedderConfig, TextEmbedder

TEXTS = [
    "How do I reset my password?",
    "Open Settings → Account → Password and follow the link we e-mail you.",
    "ok",
    "",
    "Der Kühlschrank macht seit gestern ein lautes Brummen, was kann ich tun?",
    "How do I reset my password?",  # repeated: embedded once, same row
    " ".join(["a long message that runs past the sequence cap"] * 40),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedders")


@pytest.fixture(scope="module")
def torch_vectors():
    return TextEmbedder(device="cpu", backend="torch").embed(TEXTS)


# int8 moves very short texts most ("ok": cosine 0.97 to torch's vector), longer ones ≈0.99.
@pytest.mark.parametrize(("backend", "min_cos", "mean_cos"), [("onnx", 0.9999, 0.9999), ("onnx-int8", 0.95, 0.98)])
def test_onnx_backends_match_torch_vectors(backend, min_cos, mean_cos, cache, torch_vectors):
    embedder = TextEmbedder(device="cpu", backend=backend, cache_dir=str(cache))
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cos = (vectors * torch_vectors).sum(axis=1)
    assert cos.min() >= min_cos and cos.mean() >= mean_cos, cos
    assert np.array_equal(vectors[0], vectors[5])  # a repeated text is embedded once
    assert embedder.onnx_path is not None and embedder.onnx_path.is_relative_to(cache)
    assert embedder.name.endswith(f"|backend={backend}")  # history from another backend is not mixed in


def test_export_is_built_once_and_records_what_made_it(cache):
    first = TextEmbedder(device="cpu", backend="onnx-int8", cache_dir=str(cache))
    first.embed(["x"])
    stamp = first.onnx_path.stat().st_mtime_ns
    again = TextEmbedder(device="cpu", backend="onnx-int8", cache_dir=str(cache))
    again.embed(["x"])
    assert again.onnx_path == first.onnx_path and again.onnx_path.stat().st_mtime_ns == stamp
    made = json.loads((first.onnx_path.parent / "export.json").read_text())
    assert {"weights", "recipe", "torch", "onnx", "onnxruntime"} <= set(made)
    assert not list(cache.glob(".export-*"))  # no half-built folder left behind


def test_embedding_order_does_not_depend_on_length_sorting(cache):
    embedder = TextEmbedder(device="cpu", backend="onnx", cache_dir=str(cache))
    together = embedder.embed(TEXTS)
    one_by_one = np.vstack([embedder.embed([t]) for t in TEXTS])
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        TextEmbedder(backend="tensorrt")
    with pytest.raises(ValueError, match="CPU"):
        TextEmbedder(device="cuda", backend="onnx").embed(["x"])


def test_auto_backend_is_int8_onnx_on_cpu_and_torch_on_gpu():
    assert EmbedderConfig().backend == "auto"
    assert TextEmbedder(device="cpu").backend == "onnx-int8"
    assert TextEmbedder(device="cuda").backend == "torch"  # resolved without loading anything
    assert TextEmbedder(device="cpu", backend="torch").name.endswith("|max_seq_length=128")


def test_config_carries_the_backend_to_the_embedder():
    embedder = TextEmbedder.from_config(EmbedderConfig(backend="onnx", cache_dir="/nonexistent/cache"))
    assert embedder.backend == "onnx" and embedder.cache_dir == "/nonexistent/cache"
