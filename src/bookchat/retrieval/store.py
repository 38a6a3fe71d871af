"""Qdrant: the client (embedded engine, a server or Cloud, or the legacy local mode) and the collection that holds a
corpus's chunks."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from bookchat.retrieval.qdrant_local import LocalRunner, install_fast_sparse_scoring, limit_blas_threads
from bookchat.retrieval.stores.api import QdrantApi, StoreKind
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_folder import is_edge_folder
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.retrieval.stores.errors import EmbeddingModelMismatch, FolderInUse, VectorStoreError

__all__ = ["EmbeddingModelMismatch", "FolderInUse", "VectorStore", "VectorStoreError", "open_qdrant_client"]

log = logging.getLogger(__name__)

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
# The collection's metadata key naming this build of the index (recorded in PostgreSQL, see `index_id`).
INDEX_ID = "index_id"
# The payload keys searches and re-ingestion filter on, indexed; re-ingestion deletes the chunks of one
# generation of a document, or all but one.
PAYLOAD_INDEXES: tuple[tuple[str, models.PayloadSchemaType], ...] = (
    ("document_id", models.PayloadSchemaType.KEYWORD),
    ("path_prefixes", models.PayloadSchemaType.KEYWORD),
    ("generation", models.PayloadSchemaType.INTEGER),
)
# The rest of a chunk's payload (`search._payload`): only ever read back, never filtered on.
STORED_PAYLOAD_KEYS = ("source_path", "title", "url", "heading_path", "chunk_index", "text", "page")

T = TypeVar("T")
# The embedded engine's clients, in this process or in its own.
_EMBEDDED_ENGINE = (EdgeQdrantClient, EdgeProcessClient)


def open_qdrant_client(
    url: str | None,
    api_key: str | None,
    path: Path,
    kind: StoreKind = "edge",
    *,
    engine_process: bool = False,
    optimize_after: int = 0,
) -> QdrantApi:
    """A server/Cloud client when `url` is given, else the embedded store in `path` (one process only): the
    embedded engine (`edge`; in a child process of its own with `engine_process`; optimizing a collection in the
    background once `optimize_after` points were written to it, 0 never) or qdrant-client's local mode
    (`local-legacy`). Blocks while the folder opens: call it from a thread in a running service."""
    if url:
        return AsyncQdrantClient(url=url, api_key=api_key, timeout=10)
    if kind == "edge":
        if engine_process:
            return EdgeProcessClient(path, optimize_after=optimize_after)
        return EdgeQdrantClient(path, optimize_after=optimize_after)
    if is_edge_folder(path):
        raise VectorStoreError(
            f"{path} holds an index of the embedded engine, not of qdrant-client's local mode: unset "
            "BOOKCHAT_VECTOR_STORE (the embedded engine is the default), or give local mode another "
            "BOOKCHAT_QDRANT_PATH"
        )
    path.mkdir(parents=True, exist_ok=True)
    try:
        # Used from the store's own worker thread after this (see qdrant_local.LocalRunner), one call at a time.
        return AsyncQdrantClient(path=str(path), force_disable_check_same_thread=True)
    except RuntimeError as exc:
        # Local mode takes a file lock: a second process on the same folder is refused.
        raise FolderInUse(
            f"the local Qdrant folder {path} is in use by another bookchat process; stop it, or set "
            "BOOKCHAT_QDRANT_URL to a Qdrant server so several processes can share it"
        ) from exc


class VectorStore:
    """One Qdrant collection: named dense vector `dense` (unit vectors, dot product = cosine) and sparse vector
    `bm25` (IDF modifier)."""

    def __init__(self, client: QdrantApi, collection: str, *, kind: StoreKind, location: str | None = None) -> None:
        self.client = client
        self.collection = collection
        self.kind: StoreKind = kind
        # qdrant-client's local mode: the engine `qdrant_local` speeds up (and `search` takes a fast path on).
        self.is_local = kind == "local-legacy"
        # Where the index lives, for people: a server URL, or a folder and the host it is on.
        self.location = location or ("a Qdrant server" if kind == "server" else "a local Qdrant folder")
        # Local mode computes inside its coroutines: they go to a worker thread, never the event loop. The
        # embedded engine's client runs every call on its own threads already.
        self._runner = LocalRunner() if self.is_local else None
        if self.is_local:
            install_fast_sparse_scoring()
            limit_blas_threads()

    def named(self, collection: str) -> VectorStore:
        """This store over another collection, sharing the client and (local mode) the worker; close this one."""
        view = copy.copy(self)
        view.collection = collection
        return view

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Await a call on `self.client` (e.g. `await store.run(store.client.scroll(...))`): in local mode on the
        store's worker thread, so it neither blocks the event loop nor overlaps another call. Qdrant's transport
        and status errors become `VectorStoreError`."""
        try:
            if self._runner is None:
                return await call
            return await self._runner.run(call)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            # Transport failures and error statuses: callers see one error type that names the store.
            raise VectorStoreError(f"{self.description}: request failed: {exc}") from exc

    @property
    def description(self) -> str:
        where = {"server": "server", "edge": "embedded folder", "local-legacy": "local folder"}[self.kind]
        return f"Qdrant {where}, collection {self.collection!r}"

    async def ensure_collection(
        self, model_id: str, dim: int, *, sparse_id: str | None = None, name: str | None = None
    ) -> bool:
        """Create the collection for `model_id`/`dim` if missing; return True when it was created.

        `name` creates a collection under another name (a rebuild, see `switch_to`). An existing collection
        built with another model or size raises `EmbeddingModelMismatch`; so does one whose BM25 vectors were
        made by another encoder (`sparse_id`, when given and recorded).
        """
        target = name or await self.physical_name()
        if target is not None and await self.run(self.client.collection_exists(target)):
            await self._check_model(model_id, dim, sparse_id, name=target)
            return False
        target = target or self.collection
        metadata: dict[str, Any] = {"embedding_model": model_id, "embedding_dim": dim, INDEX_ID: uuid.uuid4().hex}
        if sparse_id is not None:
            metadata["sparse_encoder"] = sparse_id
        await self.run(
            self.client.create_collection(
                target,
                # Every embedder returns unit vectors, so the dot product is the cosine; local mode computes it
                # with one matrix product, where COSINE would first renormalise every stored vector on every search.
                vectors_config={DENSE_VECTOR: models.VectorParams(size=dim, distance=models.Distance.DOT)},
                sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                metadata=metadata,
                # The embedded engine converts each payload value on every write and read; these, never filtered
                # on, it keeps as one string (see edge_payload).
                **({"stored_payload_keys": STORED_PAYLOAD_KEYS} if self.kind == "edge" else {}),
            )
        )
        # Local mode scans every point anyway and warns that payload indexes do nothing there.
        indexes = () if self.is_local else PAYLOAD_INDEXES
        for field, schema in indexes:
            await self.run(self.client.create_payload_index(target, field, field_schema=schema))
        log.info("collection created", extra={"collection": target, "model": model_id, "dim": dim})
        return True

    async def index_id(self) -> str:
        """The id of the index behind `self.collection`, written into its metadata when it was built (or now,
        for collections built before ids existed)."""
        name = await self.physical_name()
        if name is None:
            raise VectorStoreError(f"{self.description} does not exist")
        metadata = dict((await self.run(self.client.get_collection(name))).config.metadata or {})
        if isinstance(metadata.get(INDEX_ID), str):
            return str(metadata[INDEX_ID])
        index_id = uuid.uuid4().hex
        await self.run(self.client.update_collection(name, metadata={INDEX_ID: index_id}))
        return index_id

    async def physical_name(self) -> str | None:
        """The collection behind `self.collection`: the target of the alias of that name, the collection of that
        name, or None when neither exists."""
        aliases = await self.run(self.client.get_aliases())
        for alias in aliases.aliases:
            if alias.alias_name == self.collection:
                return alias.collection_name
        return self.collection if await self.run(self.client.collection_exists(self.collection)) else None

    def rebuild_name(self) -> str:
        """A fresh name for a collection built beside the live one (`<collection>--<8 hex digits>`)."""
        return f"{self.collection}--{uuid.uuid4().hex[:8]}"

    async def drop_abandoned_rebuilds(self) -> list[str]:
        """Delete collections named like `rebuild_name()` that the live name does not point at (a rebuild that
        crashed before `switch_to`)."""
        live = await self.physical_name()
        listing = await self.run(self.client.get_collections())
        abandoned = [
            item.name
            for item in listing.collections
            if item.name.startswith(f"{self.collection}--") and item.name != live
        ]
        for name in abandoned:
            await self.run(self.client.delete_collection(name))
        return abandoned

    async def switch_to(self, rebuilt: str) -> None:
        """Make `self.collection` name the collection `rebuilt` (an alias), then drop the one it named before.

        Readers use the old collection until this call and the new one after it. Where the name was a collection
        rather than an alias (indexes built before rebuilds existed), it must be deleted before the alias can
        take its name: on local mode both steps run as one call of the store's worker, so no query falls between
        them; on a server a query in that instant gets a clear 503.
        """
        previous = await self.physical_name()

        async def switch() -> None:
            operations: list[models.AliasOperations] = []
            if previous == self.collection:
                await self.client.delete_collection(self.collection)
            elif previous is not None:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.collection))
                )
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=rebuilt, alias_name=self.collection)
                )
            )
            await self.client.update_collection_aliases(change_aliases_operations=operations)

        await self.run(switch())
        if previous is not None and previous not in (self.collection, rebuilt):
            await self.run(self.client.delete_collection(previous))
        log.info("collection rebuilt", extra={"collection": self.collection, "now": rebuilt})

    async def _check_model(self, model_id: str, dim: int, sparse_id: str | None = None, *, name: str) -> None:
        info = await self.run(self.client.get_collection(name))
        metadata: dict[str, Any] = dict(info.config.metadata or {})
        vectors = info.config.params.vectors
        stored_dim = vectors[DENSE_VECTOR].size if isinstance(vectors, dict) and DENSE_VECTOR in vectors else None
        stored_model = metadata.get("embedding_model")
        if stored_model != model_id or stored_dim != dim:
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} was built with embedding model {stored_model!r} "
                f"({stored_dim} dimensions) but {model_id!r} ({dim} dimensions) is configured; "
                "rebuild it with `bookchat ingest PATH --reindex`, or configure the original model"
            )
        stored_sparse = metadata.get("sparse_encoder")
        if sparse_id is not None and stored_sparse is not None and stored_sparse != sparse_id:
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} holds BM25 vectors made by {stored_sparse!r} but this version of "
                f"bookchat makes {sparse_id!r}; rebuild it with `bookchat ingest PATH --reindex`"
            )

    async def recreate(self, model_id: str, dim: int, *, sparse_id: str | None = None) -> None:
        """Drop and create the collection: for throw-away collections (evaluation); a book is rebuilt beside its
        live index (`switch_to`)."""
        await self.run(self.client.delete_collection(self.collection))
        await self.ensure_collection(model_id, dim, sparse_id=sparse_id)

    async def count(self, name: str | None = None) -> int:
        """Points in the collection (or in the collection `name`); 0 when it does not exist."""
        target = name or await self.physical_name()
        if target is None or not await self.run(self.client.collection_exists(target)):
            return 0
        return (await self.run(self.client.count(target, exact=True))).count

    async def ping(self) -> None:
        """Raise if Qdrant cannot be reached."""
        await self.run(self.client.get_collections())

    @property
    def owed_rebuild(self) -> dict[str, Any] | None:
        """What the embedded engine's folder still owes after a move from local mode (its index rebuilt from
        PostgreSQL, see `documents.index_migration`), or None."""
        return self.client.pending_rebuild if isinstance(self.client, _EMBEDDED_ENGINE) else None

    async def clear_owed_rebuild(self) -> None:
        if isinstance(self.client, _EMBEDDED_ENGINE) and self.client.pending_rebuild is not None:
            await self.client.clear_pending_rebuild()

    async def optimize(self) -> bool:
        """Let the embedded engine merge its segments, drop deleted points and build its vector index, on a copy
        in a process of its own (seconds for a book, a minute at 100k points; searches go on meanwhile). True when
        something was optimized; a server optimizes itself. The engine also does it by itself after enough
        writes (`Settings.edge_optimize_after`)."""
        if not isinstance(self.client, _EMBEDDED_ENGINE):
            return False
        name = await self.physical_name()
        return name is not None and await self.client.optimize(name)

    async def close(self) -> None:
        await self.run(self.client.close())
        if self._runner is not None:
            self._runner.close()
