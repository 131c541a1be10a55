"""`kto_checkpoint.json`: what a checkpoint folder is and what it came from, as a typed record.

Two writers make checkpoint folders: the KTO trainer (`kto_pipeline.train`) and the simulator's
SFT arm (`kto_pipeline.sim.sft`). Both write the fields every checkpoint has (kind, base model,
init, weeks, steps, recipe, row counts, metrics, health, fingerprint, timings); the KTO trainer
adds its run record (`KTORunRecord`: class weights, data summary, lineage, versions, …) and the
SFT arm its `arm` name. A manifest is written back with exactly the keys it was read or built
with (sorted, indent 1), so re-materialising a week rewrites the same bytes; keys this module
does not know are kept in `extra` rather than refused (a newer writer's folder still loads).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "kto_checkpoint.json"


@dataclass
class KTORunRecord:
    """What the KTO trainer records beyond the fields every checkpoint has."""

    init_manifest: dict[str, Any] | None = field(
        default=None, metadata={"help": "fingerprint, weeks and global_step of the init checkpoint; None from a base"}
    )
    weights: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "class weights: desirable, undesirable and λD·nD/(λU·nU) as ratio"}
    )
    initial_metrics: dict[str, float] = field(
        default_factory=dict, metadata={"help": "the first train log (taken at the initial weights)"}
    )
    eval_metrics: dict[str, float] = field(default_factory=dict, metadata={"help": "held-out metrics after training"})
    resumed_from_step: int | None = field(
        default=None, metadata={"help": "the Trainer checkpoint step a resumed run started from; None when fresh"}
    )
    data: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "the data summary: rows per class, source, signal and week, padding"}
    )
    lineage: dict[str, Any] = field(default_factory=dict, metadata={"help": "the caller's lineage record, verbatim"})
    log_history_summary: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "number of logs, first and last train log, loss range"}
    )
    versions: dict[str, str] = field(
        default_factory=dict, metadata={"help": "trl, transformers, peft and torch versions"}
    )
    world_size: int | None = field(default=None, metadata={"help": "data-parallel processes that trained"})
    device: str | None = field(default=None, metadata={"help": "the Trainer's device"})
    bf16: bool | None = field(default=None, metadata={"help": "whether training ran under bf16 autocast"})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_OWN = ("arm", "kto", "extra")  # CheckpointManifest fields that are not plain top-level keys


@dataclass
class CheckpointManifest:
    """The manifest of a checkpoint folder (see the module docstring)."""

    kind: str = field(metadata={"help": '"lora" (an adapter on base_model) or "full" (a whole model)'})
    base_model: str = field(metadata={"help": "the plain model the chain started from: hub name or local path"})
    init_from: str | None = field(
        default=None, metadata={"help": "the model this training started from; None: the base"}
    )
    weeks: list[str] = field(default_factory=list, metadata={"help": "the feedback weeks the chain has trained on"})
    global_step: int | None = field(default=None, metadata={"help": "optimizer steps of this training"})
    recipe: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "the training settings, as the writer keeps them"}
    )
    rows: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "rows trained: train, desirable, undesirable (eval)"}
    )
    metrics: dict[str, Any] = field(default_factory=dict, metadata={"help": "final training metrics"})
    health: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "healthy, problems, collapse record (and the reference check)"}
    )
    fingerprint: str | None = field(
        default=None, metadata={"help": "what was trained, hashed: equal means the same training"}
    )
    timings: dict[str, float] = field(default_factory=dict, metadata={"help": "seconds per phase"})
    arm: str | None = field(default=None, metadata={"help": "the simulator arm that wrote it (SFT arm only)"})
    kto: KTORunRecord | None = field(default=None, metadata={"help": "the KTO trainer's run record (absent elsewhere)"})
    extra: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "keys this module does not know, kept as read"}
    )

    @property
    def is_lora(self) -> bool:
        return self.kind == "lora"

    @property
    def collapse(self) -> dict[str, Any] | None:
        """The collapse record when this training collapsed, else None."""
        collapse = (self.health or {}).get("collapse") or {}
        return collapse if collapse.get("collapsed") else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file: the same keys the manifest was read or built with."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _OWN}
        if self.arm is not None:
            out["arm"] = self.arm
        if self.kto is not None:
            out.update(self.kto.to_dict())
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointManifest:
        missing = [k for k in ("kind", "base_model") if k not in data]
        if missing:
            raise ValueError(f"a checkpoint manifest needs key(s) {missing}; got {sorted(data)}")
        own = {f.name for f in dataclasses.fields(cls)} - set(_OWN)
        run = {f.name for f in dataclasses.fields(KTORunRecord)}
        kto = {k: v for k, v in data.items() if k in run}
        return cls(
            **{k: v for k, v in data.items() if k in own},
            arm=data.get("arm"),
            kto=KTORunRecord(**kto) if kto else None,
            extra={k: v for k, v in data.items() if k not in own | run | {"arm"}},
        )


def read_manifest(ref: str | Path) -> CheckpointManifest | None:
    """The checkpoint manifest of `ref`, or None when `ref` is not a pipeline checkpoint."""
    path = Path(ref) / MANIFEST
    if not path.is_file():
        return None
    return CheckpointManifest.from_dict(json.loads(path.read_text()))


def write_manifest(folder: str | Path, manifest: CheckpointManifest | Mapping[str, Any]) -> Path:
    """Write `folder/kto_checkpoint.json` (a mapping, e.g. a hand-made test manifest, is read as one first)."""
    if not isinstance(manifest, CheckpointManifest):
        manifest = CheckpointManifest.from_dict(manifest)
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=1, sort_keys=True, default=str))
    return path


def collapse_of(manifest: CheckpointManifest | None) -> dict[str, Any] | None:
    """The collapse record of a checkpoint whose training collapsed (both rewards falling, or a
    non-finite loss), else None. Such a checkpoint is never promoted nor built on."""
    return manifest.collapse if manifest is not None else None
