"""The embedder's transformer run by ONNX Runtime, optionally with int8 dynamic quantization.

sentence-transformers' own `backend="onnx"` exports and loads through optimum-onnx, which
cannot be installed beside this project's transformers 5 (optimum-onnx 0.1.0 requires
transformers < 4.58, optimum-intel 2.2.0 < 5.6; see benchmarks/README.md). So the export is
done here with the libraries it uses underneath: `torch.onnx.export` of the model's own
weights, ONNX Runtime's BERT graph fusions, and `onnxruntime.quantization.quantize_dynamic`
(int8 weights, per channel, on the MatMuls, like optimum's avx512_vnni preset). The result
is cached under a folder keyed by the weights' digest and the library versions, built once
on first use, never downloaded. At run time sentence-transformers still tokenizes, sorts
batches, pools and normalises: only its transformer module's model is swapped for an ONNX
Runtime session (`OrtTransformer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ONNX_BACKENDS = ("onnx", "onnx-int8")
# Bump when the export recipe changes, so cached artefacts of the old recipe are not reused.
EXPORT_RECIPE = "torchscript-opset17+ort-bert-fusion+dynamic-int8-matmul-per-channel:1"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "kto-pipeline" / "embedders"


def _weights_digest(model_dir: Path) -> str:
    h = hashlib.blake2b(digest_size=12)
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("pytorch_model*.bin")):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def exported_model(st_model: Any, weights_dir: str | Path, backend: str, cache_dir: str | Path | None = None) -> Path:
    """The ONNX file for `st_model`'s transformer (a loaded SentenceTransformer whose weights
    are in `weights_dir`): from the cache when it was built before, else exported now."""
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"backend must be one of {ONNX_BACKENDS}, got {backend!r}")
    weights_dir = Path(weights_dir)
    key_src = {"weights": _weights_digest(weights_dir), "recipe": EXPORT_RECIPE, **_versions()}
    key = hashlib.blake2b(json.dumps(key_src, sort_keys=True).encode(), digest_size=8).hexdigest()
    folder = Path(cache_dir or default_cache_dir()) / f"{weights_dir.name}-{key}"
    target = folder / ("model_qint8.onnx" if backend == "onnx-int8" else "model.onnx")
    if target.exists():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Built in a private folder and moved in whole: a reader never sees half a file, and two
    # processes exporting at once both end with a complete artefact.
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        _export(st_model, work)
        (work / "export.json").write_text(json.dumps(key_src, indent=1))
        try:
            os.replace(work, folder)
        except OSError:  # another process finished first: use its copy
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _export(st_model: Any, work: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    hf = st_model[0].model
    config = hf.config

    class Wrapper(torch.nn.Module):
        # Positional inputs and the one output the ONNX graph has (the tracer cannot take the
        # model's keyword-only forward as it is).
        def __init__(self) -> None:
            super().__init__()
            self.inner = hf

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
            )
            return out.last_hidden_state

    features = st_model.tokenize(["an example sentence to trace", "another, a little longer, example sentence"])
    args = tuple(features[name] for name in _INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "last_hidden_state")}
    raw = work / "model_raw.onnx"
    # The tracer warns about every shape-dependent branch of the model: expected, and noise here.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper().eval(),
            args,
            str(raw),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and dynamic axes as given
        )
    # ONNX Runtime's fusions for BERT-like encoders (attention, layer norm, GELU); others are
    # kept as exported.
    if config.model_type in ("bert", "roberta", "distilbert", "mpnet", "xlm-roberta"):
        fused = optimize_model(
            str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        fused.save_model_to_file(str(work / "model.onnx"))
        raw.unlink()
    else:
        raw.rename(work / "model.onnx")
    # Only the weight MatMuls: the fused attention stays float (quantizing it too cost 0.4 points
    # of cosine to the float model for no speed).
    quantize_dynamic(
        str(work / "model.onnx"),
        str(work / "model_qint8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": 1},  # fused ops have no inferred type: float
    )


def ort_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module:
    takes its tokenizer's tensors, returns `last_hidden_state` from an ONNX Runtime session."""

    def __init__(self, session: Any, config: Any):
        super().__init__()
        self.session = session
        self.config = config
        self._names = [i.name for i in session.get_inputs()]

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_: Any) -> dict:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._names:
            feed["token_type_ids"] = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        arrays = {k: np.ascontiguousarray(v.cpu().numpy(), dtype=np.int64) for k, v in feed.items()}
        (hidden,) = self.session.run(["last_hidden_state"], arrays)
        return {"last_hidden_state": torch.from_numpy(hidden)}


def use_onnx(st_model: Any, weights_dir: str | Path, backend: str, cache_dir: str | Path | None = None) -> Path:
    """Swap `st_model`'s transformer for an ONNX Runtime session of it (exported on first use);
    returns the ONNX file used."""
    path = exported_model(st_model, weights_dir, backend, cache_dir)
    module = st_model[0]
    module.model = OrtTransformer(ort_session(path), module.model.config)
    return path
