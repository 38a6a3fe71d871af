"""Qdrant: the client (embedded folder, server or Cloud) and the collection that holds a corpus's chunks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

log = logging.getLogger(__name__)

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"


class VectorStoreError(RuntimeError):
    """Qdrant cannot be used as configured; the message names the fix."""


class EmbeddingModelMismatch(VectorStoreError):
    """The collection was built with another embedding model or size than the one configured."""


def open_qdrant_client(url: str | None, api_key: str | None, path: Path) -> AsyncQdrantClient:
    """A server/Cloud client when `url` is given, else the embedded store in `path` (one process only)."""
    if url:
        return AsyncQdrantClient(url=url, api_key=api_key, timeout=10)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return AsyncQdrantClient(path=str(path))
    except RuntimeError as exc:
        # Local mode takes a file lock: a second process on the same folder is refused.
        raise VectorStoreError(
            f"the local Qdrant folder {path} is in use by another bookchat process; stop it, or set "
            "BOOKCHAT_QDRANT_URL to a Qdrant server so several processes can share it"
        ) from exc


class VectorStore:
    """One Qdrant collection: named dense vector `dense` (cosine) and sparse vector `bm25` (IDF modifier)."""

    def __init__(self, client: AsyncQdrantClient, collection: str, *, is_local: bool) -> None:
        self.client = client
        self.collection = collection
        self.is_local = is_local

    @property
    def description(self) -> str:
        return f"Qdrant {'local folder' if self.is_local else 'server'}, collection {self.collection!r}"

    async def ensure_collection(self, model_id: str, dim: int) -> bool:
        """Create the collection for `model_id`/`dim` if missing; return True when it was created.

        An existing collection built with another model or size raises `EmbeddingModelMismatch`.
        """
        if await self.client.collection_exists(self.collection):
            await self._check_model(model_id, dim)
            return False
        await self.client.create_collection(
            self.collection,
            vectors_config={DENSE_VECTOR: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embedding_model": model_id, "embedding_dim": dim},
        )
        for field, schema in (
            ("document_id", models.PayloadSchemaType.KEYWORD),
            ("path_prefixes", models.PayloadSchemaType.KEYWORD),
        ):
            await self.client.create_payload_index(self.collection, field, field_schema=schema)
        log.info("collection created", extra={"collection": self.collection, "model": model_id, "dim": dim})
        return True

    async def _check_model(self, model_id: str, dim: int) -> None:
        info = await self.client.get_collection(self.collection)
        metadata: dict[str, Any] = dict(info.config.metadata or {})
        vectors = info.config.params.vectors
        stored_dim = (
            vectors[DENSE_VECTOR].size if isinstance(vectors, dict) and DENSE_VECTOR in vectors else None
        )
        stored_model = metadata.get("embedding_model")
        if stored_model != model_id or stored_dim != dim:
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} was built with embedding model {stored_model!r} "
                f"({stored_dim} dimensions) but {model_id!r} ({dim} dimensions) is configured; "
                "rebuild it with `bookchat ingest PATH --reindex`, or configure the original model"
            )

    async def recreate(self, model_id: str, dim: int) -> None:
        """Drop and create the collection (the `--reindex` path)."""
        await self.client.delete_collection(self.collection)
        await self.ensure_collection(model_id, dim)

    async def count(self) -> int:
        if not await self.client.collection_exists(self.collection):
            return 0
        return (await self.client.count(self.collection, exact=True)).count

    async def ping(self) -> None:
        """Raise if Qdrant cannot be reached."""
        await self.client.get_collections()

    async def close(self) -> None:
        await self.client.close()
