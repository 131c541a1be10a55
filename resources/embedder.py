"""The sentence embedder (SemDeDup, and the vectors DEITA's diversity pass reuses)."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg

from kto_pipeline.curate.embeddings import EmbedderConfig, TextEmbedder
from resources.library_config import config_from


@lru_cache(maxsize=2)
def _embedder(config: EmbedderConfig) -> TextEmbedder:
    # Cached per process so a multi-week run loads the model once.
    return TextEmbedder.from_config(config)


class Embedder(config_from(EmbedderConfig, base=dg.ConfigurableResource, name="EmbedderConfigBase")):
    """A sentence-transformers model by name or local path (default: the bundled all-MiniLM-L6-v2)."""

    def get(self) -> TextEmbedder:
        return _embedder(self.to_library())
