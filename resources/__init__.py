"""Dagster resources of kto-pipeline: storage, IO manager, the feedback dump source, the LLMs, the Ray cluster."""

from resources.dedup_history import DedupHistoryStore
from resources.embedder import Embedder
from resources.feedback_source import FeedbackSource
from resources.generator import TeacherLLM
from resources.judge import JudgeLLM
from resources.parquet_io import ParquetIOManager
from resources.pii import PiiRedactor
from resources.ray_cluster import RayCluster
from resources.scorer import DeitaScorerResource
from resources.trainer import KTOTrainerResource

__all__ = [
    "DedupHistoryStore",
    "DeitaScorerResource",
    "Embedder",
    "FeedbackSource",
    "JudgeLLM",
    "KTOTrainerResource",
    "ParquetIOManager",
    "PiiRedactor",
    "RayCluster",
    "TeacherLLM",
]
