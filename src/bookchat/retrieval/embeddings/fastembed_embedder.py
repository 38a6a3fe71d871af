"""The fastembed embedder: any model of fastembed's catalogue, by name (the optional `bookchat[fastembed]` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bookchat.retrieval.embeddings.base import ONNX_MAX_BATCH, EmbeddingError, Vectors, approximate_tokens, normalise
from bookchat.retrieval.embeddings.threads import EmbeddingThreads

DEFAULT_FASTEMBED_MODEL = "BAAI/bge-small-en-v1.5"


class FastembedEmbedder:
    """Any model of fastembed's catalogue by name, downloaded once into `cache_dir` where a network exists.

    fastembed is an optional extra (`bookchat[fastembed]`): once installed, qdrant-client imports it at start-up
    too, which costs every process a fifth of a second for a provider most installations never use.
    """

    def __init__(self, model_name: str, *, cache_dir: Path, batch_size: int = 64, threads: int | None = None) -> None:
        try:
            from fastembed import TextEmbedding
        except ImportError as exc:
            raise EmbeddingError(
                "BOOKCHAT_EMBEDDING_PROVIDER=fastembed needs the fastembed package: pip install 'bookchat[fastembed]'"
            ) from exc
        try:
            self._model = TextEmbedding(model_name, cache_dir=str(cache_dir), threads=threads)
            self.dim = int(TextEmbedding.get_embedding_size(model_name))
        except Exception as exc:  # fastembed raises ValueError for unknown names and assorted errors offline
            raise EmbeddingError(
                f"fastembed model {model_name!r} could not be loaded ({exc}); it is downloaded into {cache_dir} on "
                "first use, which needs network access once. Check the name against "
                "fastembed's TextEmbedding.list_supported_models(), or use BOOKCHAT_EMBEDDING_PROVIDER=local"
            ) from exc
        self.model_id = f"fastembed:{model_name}"
        self.batch_size = min(batch_size, ONNX_MAX_BATCH)
        self._worker = EmbeddingThreads("fastembed")

    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self._model.model, "tokenizer", None)
        if tokenizer is None:  # pragma: no cover - every ONNX text model of fastembed has one
            return approximate_tokens(text)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []

        def run() -> Vectors:
            return normalise(np.vstack(list(self._model.passage_embed(list(texts), batch_size=self.batch_size))))

        result: list[list[float]] = (await self._worker.documents(run)).tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        def run() -> Vectors:
            return normalise(np.vstack(list(self._model.query_embed(text))))

        result: list[float] = (await self._worker.query(run))[0].tolist()
        return result
