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
- DEITA scoring with local causal LMs: the scorer's own batches as tasks, on GPUs when there
  are some (`scoring`); an OpenAI-compatible scorer server is left as it is.

Data travels as Ray object references (chunk arguments and results go through the object
store), not row by row through calls. Every task is deterministic and retried (`max_retries`)
when its worker or node dies, so losing a node mid-stage changes nothing but the time.

Stays on the driver, by choice (each a small part next to what moved, in
benchmarks/results/curation.md and curation_minhash.md): SemDeDup within clusters (2.4k rows/s
at 26k rows, against embedding's 50), and the LSH index with its candidate checks (about 20 µs a
row: signatures 20-30k rows/s, the whole stage 14-18k). The cross-week history stays the
Parquet files of `DedupHistory` in shared storage rather than datasketch's Redis storage: the
LSH work it would spread is already small; datasketch's Redis index costs about 28 Redis
commands a row to fill (14 bands, a bucket and a key entry each; this machine's Redis does
51k SADDs/s one at a time, 810k pipelined); rows inserted by many workers at once would make
"the first row of a duplicate group" depend on timing, not on (timestamp, row_id); and a
rerun of a week would find its own rows in the index unless they were deleted first. One
file per week makes a rerun idempotent and needs no service beside the storage.
"""

from kto_pipeline.cluster.backend import RayBackend
from kto_pipeline.cluster.config import LOCAL, RayConfig
from kto_pipeline.cluster.embedding import RayEncoder
from kto_pipeline.cluster.minhash import RayRowSignatures
from kto_pipeline.cluster.redaction import ray_record_mapper
from kto_pipeline.cluster.scoring import RayScoreBackend
from kto_pipeline.cluster.session import connect

__all__ = [
    "LOCAL",
    "RayBackend",
    "RayConfig",
    "RayEncoder",
    "RayRowSignatures",
    "RayScoreBackend",
    "connect",
    "ray_record_mapper",
]
