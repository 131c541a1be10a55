"""`RayBackend`: the cluster executors of the curation stages, from one `RayConfig`."""

from __future__ import annotations

from kto_pipeline.cluster.config import RayConfig
from kto_pipeline.cluster.embedding import RayEncoder
from kto_pipeline.cluster.minhash import RayRowSignatures
from kto_pipeline.cluster.redaction import ray_record_mapper, ray_text_analyzer
from kto_pipeline.cluster.scoring import on_cluster
from kto_pipeline.curate.deita.scorer import DeitaScorer
from kto_pipeline.curate.embeddings import TextEmbedder
from kto_pipeline.curate.redaction.leaks import TextAnalyzer
from kto_pipeline.curate.redaction.redact import RecordMapper


class RayBackend:
    """What a curation step passes to the library to run its heavy part on the cluster:
    `redact(rows, config, mapper=backend.redaction_mapper())`,
    `scan_for_leaks(rows, config, analyzer=backend.leak_analyzer())`,
    `deduplicate(..., signatures=backend.row_signatures())`,
    `embed_rows(rows, backend.encoder(embedder).embed)` and `backend.scorer(scorer).score(rows)`.

    Nothing connects until a stage runs; then once per process (`session.connect`).
    """

    def __init__(self, config: RayConfig):
        if not config.enabled:
            raise ValueError("RayConfig.address is None: use the local path, not a RayBackend")
        self.config = config

    def redaction_mapper(self) -> RecordMapper:
        return ray_record_mapper(self.config)

    def leak_analyzer(self) -> TextAnalyzer:
        return ray_text_analyzer(self.config)

    def row_signatures(self) -> RayRowSignatures:
        return RayRowSignatures(self.config)

    def encoder(self, embedder: TextEmbedder) -> RayEncoder:
        return RayEncoder(self.config, embedder)

    def scorer(self, scorer: DeitaScorer) -> DeitaScorer:
        return on_cluster(self.config, scorer)

    def __repr__(self) -> str:
        return f"RayBackend(address={self.config.address!r})"
