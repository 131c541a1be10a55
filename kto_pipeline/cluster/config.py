"""`RayConfig`: whether curation runs on a Ray cluster, which one, and in what units of work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOCAL = "local"


@dataclass(frozen=True)
class RayConfig:
    """Where the heavy curation stages run (redaction, MinHash signatures, embedding) and how
    their work is cut into Ray tasks.

    Parameters that choose the cluster: address, runtime_env. Parameters that size the work:
    minhash_rows_per_task, embedding_batches_per_task, num_cpus_per_task, gpus_per_task.
    Fault tolerance: max_retries (a task lost with its node runs again elsewhere).
    """

    address: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster to run on: a GCS address (host:port), ray://host:10001, 'auto', or 'local' "
            "(an in-process Ray for development); None: no Ray, everything runs in this process"
        },
    )
    runtime_env: Mapping[str, Any] | None = field(
        default=None,
        metadata={"help": "Ray runtime_env for the job (env_vars, py_modules, ...); None: the cluster's own"},
    )
    minhash_rows_per_task: int = field(
        # One block of `minhash_signatures` (1024 texts): a task then runs single-threaded,
        # which is what its one CPU reservation promises.
        default=1024,
        metadata={"help": "Rows whose MinHash signatures one task computes"},
    )
    embedding_batches_per_task: int = field(
        default=8,
        metadata={"help": "Embedder batches (of its batch_size texts) one task encodes"},
    )
    num_cpus_per_task: float = field(default=1.0, metadata={"help": "CPUs reserved by every task"})
    gpus_per_task: float | None = field(
        # None: one GPU per embedding or scoring task when the cluster has GPUs, none otherwise.
        default=None,
        metadata={
            "help": "GPUs reserved by an embedding or DEITA scoring task; None: 1 when the cluster has GPUs, else 0"
        },
    )
    max_retries: int = field(
        default=3,
        metadata={"help": "Times a task is run again after its worker or node died (results are deterministic)"},
    )

    def __post_init__(self) -> None:
        if self.address is not None and not str(self.address).strip():
            raise ValueError("address must be None (no Ray) or a cluster address, not empty")
        for name in ("minhash_rows_per_task", "embedding_batches_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_cpus_per_task <= 0:
            raise ValueError(f"num_cpus_per_task must be > 0, got {self.num_cpus_per_task}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise ValueError(f"gpus_per_task must be >= 0, got {self.gpus_per_task}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    @property
    def enabled(self) -> bool:
        return self.address is not None
