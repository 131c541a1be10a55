"""Curation on a Ray cluster: the heavy stages' work as Ray tasks, the same output as locally.

Off unless `RayConfig.address` is set; then `RayBackend` hands the library the executors that
replace one step each, and everything else (reading the week, the rules that decide what is
kept, the order of rows) stays in the driver exactly as on one machine:

- redaction: chunks of records (`RedactionConfig.chunk_records`, the local pool's chunks) as
  tasks; each worker process builds the NER engines once (`redaction`).
- MinHash signatures: blocks of rows as tasks (`minhash`); a row's signature depends on its
  texts only, so the blocks concatenate to the local result.
- embedding: the distinct texts in the exact batches sentence-transformers would form, encoded
  by tasks that take a GPU when the cluster has one (`embedding`).

Data travels as Ray object references (chunk arguments and results go through the object
store), not row by row through calls. Every task is deterministic and retried (`max_retries`)
when its worker or node dies, so losing a node mid-stage changes nothing but the time.

Stays on the driver, by choice: the LSH index and its candidate checks, SemDeDup within
clusters and DEITA scoring. The LSH query is a small part of the stage next to the signatures
(benchmarks/results/curation.md), and the cross-week history stays the Parquet files of
`DedupHistory` in shared storage: one file per week makes a rerun of a week idempotent and
the "first" row of a duplicate group independent of which worker inserted first (what a shared
Redis-backed MinHashLSH could not promise without its own locking and per-week deletion).
"""

from kto_pipeline.cluster.backend import RayBackend
from kto_pipeline.cluster.config import LOCAL, RayConfig
from kto_pipeline.cluster.embedding import RayEncoder
from kto_pipeline.cluster.minhash import RayRowSignatures
from kto_pipeline.cluster.redaction import ray_record_mapper
from kto_pipeline.cluster.session import connect

__all__ = ["LOCAL", "RayBackend", "RayConfig", "RayEncoder", "RayRowSignatures", "connect", "ray_record_mapper"]
