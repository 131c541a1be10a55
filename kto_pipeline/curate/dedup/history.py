"""`DedupHistory`: what earlier weeks kept (hashes, MinHash signatures, embeddings, and the
settings they were deduplicated with), and its encoding as a frame for Parquet storage."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kto_pipeline.core.missing import is_missing
from kto_pipeline.curate.dedup.config import DedupConfig
from kto_pipeline.curate.dedup.sketch import (
    DATASKETCH_VERSION,
    MINHASH_SCHEME,
    SketchMismatchError,
    check_spec_reproducible,
    parse_spec,
)

HISTORY_COLUMNS = [
    "row_id",
    "week",
    "label",
    "exact_hash",
    "minhash",
    "minhash_prompt",
    "minhash_completion",
    "embedding",
    "minhash_scheme",
    "datasketch_version",
    "sketch",
    "embedding_model",
]


@dataclass
class DedupHistory:
    """What earlier weeks kept, to deduplicate the current week against.

    Arrays are aligned: one entry per kept row. `minhash_prompt` / `minhash_completion` are
    (n, num_perm) uint32 signatures of the two parts; `minhashes` (their element-wise
    minimum) is the row's signature, the one MinHashLSH indexes. `embeddings` is (n, dim)
    float32. `sketch` describes how the signatures were made (None: no signatures yet, so
    compatible with anything); `scheme` is the datasketch permutation scheme. `config` is the
    `DedupConfig` the rows were deduplicated with (None when unknown, e.g. histories written
    before it was recorded), so later screening can use the same settings.
    """

    row_ids: np.ndarray
    labels: np.ndarray
    exact_hashes: np.ndarray
    minhash_prompt: np.ndarray
    minhash_completion: np.ndarray
    embeddings: np.ndarray
    weeks: np.ndarray | None = None
    scheme: str = MINHASH_SCHEME
    sketch: str | None = None
    datasketch_version: str = DATASKETCH_VERSION
    embedding_model: str | None = None
    config: DedupConfig | None = None

    def __post_init__(self):
        self.row_ids = np.asarray(self.row_ids, dtype=object)
        n = len(self.row_ids)
        self.labels = np.asarray(self.labels, dtype=bool)
        self.exact_hashes = np.asarray(self.exact_hashes, dtype=object)
        self.minhash_prompt = _as_matrix(self.minhash_prompt, np.uint32, n, "minhash_prompt")
        self.minhash_completion = _as_matrix(self.minhash_completion, np.uint32, n, "minhash_completion")
        self.embeddings = _as_matrix(self.embeddings, np.float32, n, "embeddings")
        self.weeks = np.full(n, None, dtype=object) if self.weeks is None else np.asarray(self.weeks, dtype=object)
        for name in ("labels", "exact_hashes", "minhash_prompt", "minhash_completion", "weeks"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"history {name} has {len(getattr(self, name))} entries for {n} rows")
        if self.minhash_prompt.shape != self.minhash_completion.shape:
            raise ValueError("history prompt and completion signatures differ in width")

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def num_perm(self) -> int:
        return self.minhash_prompt.shape[1]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def minhashes(self) -> np.ndarray:
        """(n, num_perm) uint32 MinHash signatures of the whole rows."""
        return np.minimum(self.minhash_prompt, self.minhash_completion)

    @classmethod
    def empty(cls, num_perm: int = 128, dim: int = 0) -> DedupHistory:
        return cls(
            row_ids=np.zeros(0, dtype=object),
            labels=np.zeros(0, dtype=bool),
            exact_hashes=np.zeros(0, dtype=object),
            minhash_prompt=np.zeros((0, num_perm), dtype=np.uint32),
            minhash_completion=np.zeros((0, num_perm), dtype=np.uint32),
            embeddings=np.zeros((0, dim), dtype=np.float32),
        )

    @classmethod
    def concat(cls, histories: Iterable[DedupHistory | None]) -> DedupHistory:
        """One history from several (e.g. the last K weeks'); empty ones are skipped. The
        result keeps a config only when every part that has one has the same."""
        histories = [h for h in histories if h is not None]
        configs = {h.config for h in histories if h.config is not None}
        config = next(iter(configs)) if len(configs) == 1 else None
        full = [h for h in histories if len(h)]
        if not full:
            hist = cls.empty(histories[0].num_perm, histories[0].dim) if histories else cls.empty()
            hist.config = config
            return hist
        first = full[0]
        for h in full[1:]:
            if h.scheme != first.scheme:
                raise SketchMismatchError(
                    f"cannot combine histories of MinHash schemes {first.scheme!r} and {h.scheme!r}"
                )
            if h.sketch != first.sketch:
                raise SketchMismatchError(
                    f"cannot combine histories made with different sketches: {first.sketch!r} vs {h.sketch!r}"
                )
            if h.dim != first.dim:
                raise ValueError(f"cannot combine histories of embedding widths {first.dim} and {h.dim}")
        models = {h.embedding_model for h in full if h.embedding_model is not None}
        if len(models) > 1:
            raise ValueError(f"cannot combine histories of different embedding models: {sorted(models)}")
        return cls(
            row_ids=np.concatenate([h.row_ids for h in full]),
            labels=np.concatenate([h.labels for h in full]),
            exact_hashes=np.concatenate([h.exact_hashes for h in full]),
            minhash_prompt=np.concatenate([h.minhash_prompt for h in full]),
            minhash_completion=np.concatenate([h.minhash_completion for h in full]),
            embeddings=np.concatenate([h.embeddings for h in full]),
            weeks=np.concatenate([h.weeks for h in full]),
            scheme=first.scheme,
            sketch=first.sketch,
            datasketch_version=first.datasketch_version,
            embedding_model=next(iter(models), None),
            config=config,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per history row. Signatures and vectors are little-endian bytes
        (uint32 × num_perm, float32 × dim); every row also names the MinHash scheme, the
        datasketch version and the sketch description, so a mismatch is caught on load
        whatever storage the frame went through. `attrs` repeats them for an empty frame, and
        holds the config as a JSON string ("dedup_config", absent when the config is unknown)."""
        n = len(self)
        le32 = np.dtype("<u4")
        lef = np.dtype("<f4")
        sig = self.minhashes.astype(le32)
        sp = self.minhash_prompt.astype(le32)
        sc = self.minhash_completion.astype(le32)
        emb = self.embeddings.astype(lef)
        frame = pd.DataFrame(
            {
                "row_id": pd.Series(self.row_ids, dtype="str"),
                "week": pd.Series(self.weeks, dtype="str"),
                "label": pd.Series(self.labels, dtype="bool"),
                "exact_hash": pd.Series(self.exact_hashes, dtype="str"),
                "minhash": pd.Series([sig[i].tobytes() for i in range(n)], dtype=object),
                "minhash_prompt": pd.Series([sp[i].tobytes() for i in range(n)], dtype=object),
                "minhash_completion": pd.Series([sc[i].tobytes() for i in range(n)], dtype=object),
                "embedding": pd.Series([emb[i].tobytes() for i in range(n)], dtype=object),
                "minhash_scheme": pd.Series([self.scheme] * n, dtype="str"),
                "datasketch_version": pd.Series([self.datasketch_version] * n, dtype="str"),
                "sketch": pd.Series([self.sketch] * n, dtype="str"),
                "embedding_model": pd.Series([self.embedding_model] * n, dtype="str"),
            },
            columns=HISTORY_COLUMNS,
        )
        frame.attrs.update(
            {
                "minhash_scheme": self.scheme,
                "datasketch_version": self.datasketch_version,
                "sketch": self.sketch,
                "num_perm": self.num_perm,
                "embedding_dim": self.dim,
                "embedding_model": self.embedding_model,
            }
        )
        if self.config is not None:
            frame.attrs["dedup_config"] = json.dumps(self.config.to_dict())
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> DedupHistory:
        """Inverse of `to_frame`. Raises `SketchMismatchError` when the stored sketches were
        made with another MinHash scheme (e.g. datasketch < 2.0's "legacy"), other
        permutations, or an unknown scheme: such signatures cannot be compared with ours, and
        the earlier weeks must be recomputed."""
        attrs = getattr(frame, "attrs", {}) or {}
        if "minhash_scheme" not in frame.columns:
            raise SketchMismatchError(
                "history frame has no 'minhash_scheme' column: the MinHash scheme of its sketches is "
                f"unknown and they cannot be compared with {MINHASH_SCHEME!r} sketches"
            )
        missing = [c for c in ("row_id", "label", "exact_hash", "embedding") if c not in frame.columns]
        if missing:
            raise ValueError(f"history frame lacks columns {missing}")
        n = len(frame)
        schemes = _distinct(frame["minhash_scheme"]) if n else _distinct([attrs.get("minhash_scheme")])
        for scheme in schemes:
            if scheme != MINHASH_SCHEME:
                raise SketchMismatchError(
                    f"stored MinHash sketches use scheme {scheme!r} (datasketch "
                    f"{_first(frame, 'datasketch_version', attrs)}); this pipeline computes "
                    f"{MINHASH_SCHEME!r} sketches (datasketch {DATASKETCH_VERSION}). Sketches of "
                    "different schemes cannot be compared: recompute the earlier weeks' dedup history."
                )
        sketch = None
        if "sketch" in frame.columns and n:
            specs = _distinct(frame["sketch"])
            if len(specs) > 1:
                raise SketchMismatchError(f"history frame mixes sketch descriptions: {specs}")
            sketch = specs[0] if specs else None
        elif not n:
            sketch = attrs.get("sketch")
        if n and sketch is None:
            raise SketchMismatchError("history frame does not describe how its sketches were made ('sketch')")
        if sketch is not None:
            check_spec_reproducible(sketch)
        version = _first(frame, "datasketch_version", attrs) or "unknown"
        models = _distinct(frame["embedding_model"]) if "embedding_model" in frame.columns and n else []
        if len(models) > 1:
            raise ValueError(f"history frame mixes embedding models: {models}")
        model = models[0] if models else (attrs.get("embedding_model") if not n else None)
        config = _config_from_attrs(attrs)

        if not n:
            num_perm = int(attrs.get("num_perm") or (int(parse_spec(sketch)["num_perm"]) if sketch else 128))
            hist = cls.empty(num_perm, int(attrs.get("embedding_dim") or 0))
            hist.sketch, hist.embedding_model, hist.datasketch_version = sketch, model, version
            hist.config = config
            return hist
        num_perm = int(parse_spec(sketch)["num_perm"])
        if "minhash_prompt" in frame.columns and "minhash_completion" in frame.columns:
            sp = _decode(frame["minhash_prompt"], np.dtype("<u4"), num_perm, "minhash_prompt")
            sc = _decode(frame["minhash_completion"], np.dtype("<u4"), num_perm, "minhash_completion")
        else:
            raise SketchMismatchError("history frame has no per-part signatures (minhash_prompt, minhash_completion)")
        if "minhash" in frame.columns:
            whole = _decode(frame["minhash"], np.dtype("<u4"), num_perm, "minhash")
            if not np.array_equal(whole, np.minimum(sp, sc)):
                raise ValueError("history column minhash is not the union of minhash_prompt and minhash_completion")
        emb = _decode(frame["embedding"], np.dtype("<f4"), None, "embedding")
        weeks = frame["week"].to_numpy(dtype=object) if "week" in frame.columns else None
        if weeks is not None:
            weeks = np.array([None if is_missing(w) else str(w) for w in weeks], dtype=object)
        return cls(
            row_ids=np.array([str(r) for r in frame["row_id"]], dtype=object),
            labels=frame["label"].to_numpy(dtype=bool),
            exact_hashes=np.array([str(h) for h in frame["exact_hash"]], dtype=object),
            minhash_prompt=sp.astype(np.uint32),
            minhash_completion=sc.astype(np.uint32),
            embeddings=emb.astype(np.float32),
            weeks=weeks,
            scheme=MINHASH_SCHEME,
            sketch=sketch,
            datasketch_version=version,
            embedding_model=model,
            config=config,
        )


def _config_from_attrs(attrs: dict) -> DedupConfig | None:
    """The config `to_frame` stored, or None for frames written before configs were stored."""
    stored = attrs.get("dedup_config")
    if stored is None:
        return None
    return DedupConfig.from_dict(json.loads(stored) if isinstance(stored, str) else stored)


def _as_matrix(values, dtype, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"history {name} must have shape ({n}, width), got {arr.shape}")
    return arr


def _distinct(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if is_missing(v):
            continue
        v = str(v)
        if v not in out:
            out.append(v)
    return out


def _first(frame: pd.DataFrame, column: str, attrs: dict):
    if column in frame.columns and len(frame):
        vals = _distinct(frame[column])
        if vals:
            return vals[0]
    return attrs.get(column)


def _decode(values: pd.Series, dtype: np.dtype, width: int | None, name: str) -> np.ndarray:
    rows = []
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)):
            arr = np.frombuffer(bytes(v), dtype=dtype)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValueError(f"history column {name} has a missing value")
        else:
            arr = np.asarray(v, dtype=np.float64 if dtype.kind == "f" else np.int64)
            if dtype.kind == "u" and ((arr < 0).any() or (arr > np.iinfo(np.uint32).max).any()):
                raise ValueError(f"history column {name} has values outside uint32")
            arr = arr.astype(dtype)
        rows.append(arr)
    widths = {len(r) for r in rows}
    if len(widths) != 1 or (width is not None and widths != {width}):
        raise ValueError(f"history column {name} has widths {sorted(widths)}, expected {width or 'one width'}")
    return np.stack(rows)
