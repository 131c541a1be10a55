"""Redaction on a Ray cluster: a `RecordMapper` for `kto_pipeline.curate.redaction.redact`, and a
`TextAnalyzer` for the leak check's re-scan (`scan_for_leaks`).

The records are cut into the same chunks as the local pool's (`RedactionConfig.chunk_records`),
one Ray task per chunk, so each chunk's batched NLP pass sees the same texts as it would here
and the output is the same. Tasks rather than an actor pool: a task lost with its node is
retried on any node with a free CPU, while a restarted actor waits for a CPU that its healthy
peers hold until the stage ends (a deadlock on a cluster of 1-CPU nodes). The engines (spaCy,
Rampart, Presidio) are built once per worker process and reused by its later tasks, which is
what an actor would have bought.
"""

from __future__ import annotations

from functools import lru_cache

from kto_pipeline.cluster.config import RayConfig
from kto_pipeline.cluster.session import connect
from kto_pipeline.curate.redaction.config import RedactionConfig
from kto_pipeline.curate.redaction.engines import Engines
from kto_pipeline.curate.redaction.leaks import TextAnalyzer
from kto_pipeline.curate.redaction.redact import Record, RecordMapper, RedactedRecord, redact_chunk


@lru_cache(maxsize=2)
def _engines(config: RedactionConfig) -> Engines:
    # One thread per model: the task holds one CPU, and other tasks use the node's others.
    return Engines(config, model_threads=1)


def _redact_task(config: RedactionConfig, chunk: list[Record]) -> list[RedactedRecord]:
    return redact_chunk(_engines(config), chunk)


def ray_record_mapper(ray_config: RayConfig) -> RecordMapper:
    """A `RecordMapper` that redacts chunks of records as Ray tasks; results in input order."""

    def mapper(config: RedactionConfig, records: list[Record]) -> list[RedactedRecord]:
        if not records:
            return []
        import ray

        connect(ray_config)
        task = ray.remote(_redact_task).options(
            num_cpus=ray_config.num_cpus_per_task, max_retries=ray_config.max_retries, retry_exceptions=False
        )
        config_ref = ray.put(config)
        step = config.chunk_records
        refs = [task.remote(config_ref, records[i : i + step]) for i in range(0, len(records), step)]
        return [item for chunk in ray.get(refs) for item in chunk]

    return mapper


def _analyze_task(config: RedactionConfig, texts: list[str]) -> dict[str, list]:
    return _engines(config).analyze_many(texts)


def ray_text_analyzer(ray_config: RayConfig) -> TextAnalyzer:
    """A `TextAnalyzer` for the leak check's re-scan: distinct texts in chunks, as Ray tasks on
    the same engines as the redaction's (one worker process builds them once for both)."""

    def analyzer(config: RedactionConfig, texts: list[str]) -> dict[str, list]:
        if not texts:
            return {}
        import ray

        connect(ray_config)
        task = ray.remote(_analyze_task).options(
            num_cpus=ray_config.num_cpus_per_task, max_retries=ray_config.max_retries, retry_exceptions=False
        )
        config_ref = ray.put(config)
        step = config.chunk_records * 2  # a record is about two texts
        refs = [task.remote(config_ref, texts[i : i + step]) for i in range(0, len(texts), step)]
        return {text: hits for part in ray.get(refs) for text, hits in part.items()}

    return analyzer
