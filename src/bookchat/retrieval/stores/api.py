"""The interface every engine implements: the part of Qdrant's client API bookchat uses, with its own types.

Qdrant's API is the contract because every engine is Qdrant: `AsyncQdrantClient` by URL (a server, a cluster or
Qdrant Cloud) and in local mode (the legacy pure-Python engine) implement it already; `EdgeQdrantClient` implements
it over qdrant-edge, Qdrant's own engine in process. Requests and results are qdrant-client's models, so the
collection contract (named vectors, payload, point ids, filters, fusion) is written once, in `store` and `search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from qdrant_client import models
from qdrant_client.http import models as rest

# Which engine holds the index: a Qdrant server by URL, the embedded engine, or qdrant-client's local mode.
StoreKind = Literal["server", "edge", "local-legacy"]
EMBEDDED_KINDS: tuple[StoreKind, ...] = ("edge", "local-legacy")


class QdrantApi(Protocol):
    """The calls `VectorStore` and `HybridRetriever` make (parameters by the names qdrant-client gives them)."""

    async def collection_exists(self, collection_name: str, **kwargs: Any) -> bool: ...

    async def create_collection(self, collection_name: str, **kwargs: Any) -> bool: ...

    async def create_payload_index(self, collection_name: str, field_name: str, **kwargs: Any) -> Any: ...

    async def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo: ...

    async def update_collection(self, collection_name: str, **kwargs: Any) -> bool: ...

    async def delete_collection(self, collection_name: str, **kwargs: Any) -> bool: ...

    async def get_collections(self, **kwargs: Any) -> models.CollectionsResponse: ...

    async def get_aliases(self, **kwargs: Any) -> models.CollectionsAliasesResponse: ...

    async def update_collection_aliases(
        self, change_aliases_operations: Sequence[models.AliasOperations], **kwargs: Any
    ) -> bool: ...

    async def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> models.UpdateResult: ...

    async def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> models.UpdateResult: ...

    async def query_points(self, collection_name: str, **kwargs: Any) -> rest.QueryResponse: ...

    async def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[rest.QueryResponse]: ...

    async def scroll(
        self, collection_name: str, **kwargs: Any
    ) -> tuple[list[models.Record], models.ExtendedPointId | None]: ...

    async def retrieve(self, collection_name: str, ids: Sequence[models.ExtendedPointId], **kwargs: Any) -> Any: ...

    async def count(self, collection_name: str, **kwargs: Any) -> models.CountResult: ...

    async def close(self, **kwargs: Any) -> None: ...
