"""The embedded engine: Qdrant's client API (the part bookchat uses) over qdrant-edge, Qdrant's engine in process.

qdrant-edge (Apache-2.0, by Qdrant) runs the same Rust segment code as a Qdrant server inside this process: dense
and sparse search, the IDF modifier, DBSF and RRF fusion, payload filters and payload indexes, a write-ahead log.
It has no collections, aliases or metadata: `EdgeFolder` adds them. Every call runs on this client's threads, never
on the event loop. qdrant-edge 0.9 does not release the GIL while it computes (measured, see docs/benchmarks.md):
a search holds Python for its few milliseconds, so the engine keeps one search thread and leaves the other cores
to the embedder; its optimizer runs on a copy in a process of its own (`edge_optimizer`), by itself once a
collection has had `optimize_after` points written.

Long because it is one class implementing one API, each method a short translation to the engine's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http import models as rest

from bookchat.retrieval.stores import edge_convert as convert
from bookchat.retrieval.stores.edge_collection import OpenCollection
from bookchat.retrieval.stores.edge_folder import EdgeFolder
from bookchat.retrieval.stores.edge_optimizer import AutoOptimizer, ShardOptimizer
from bookchat.retrieval.stores.edge_payload import StoredKeyError, refold, selection, top_level
from bookchat.retrieval.stores.edge_schema import collection_info, edge_config, payload_schema, recorded_config
from bookchat.retrieval.stores.errors import UnsupportedRequest, VectorStoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

_COMPLETED = models.UpdateResult(operation_id=None, status=models.UpdateStatus.COMPLETED)


class EdgeQdrantClient:
    """Collections of qdrant-edge shards in one folder, with aliases and metadata; see `api.QdrantApi`."""

    def __init__(
        self,
        root: Path,
        *,
        threads: int = 4,
        pending_rebuild: dict[str, Any] | None = None,
        exits_with: int | None = None,
        optimize_after: int = 0,
    ) -> None:
        """`optimize_after`: optimize a collection in the background once that many points were written to it
        since its last optimization (0: only when `optimize` is called)."""
        self.root = root
        self.folder = EdgeFolder(root, exits_with=exits_with)
        self.catalog = self.folder.open(pending_rebuild=pending_rebuild)
        self._open: dict[str, OpenCollection] = {}
        self._lock = threading.RLock()  # the catalog and `_open`
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qdrant-edge")
        self._closed = False
        self._optimizer = ShardOptimizer(self.folder, edge_config, self._lock)
        self._auto_optimizer = (
            AutoOptimizer(self._optimizer, self._open_collections, after=optimize_after) if optimize_after else None
        )

    # --- plumbing -----------------------------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise RuntimeError("the embedded Qdrant client is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_engine_call, function, *args, **kwargs))

    def _resolve(self, name: str) -> str:
        aliases: dict[str, str] = self.catalog["aliases"]
        return aliases.get(name, name)

    def _collection(self, name: str) -> OpenCollection:
        """The open collection `name` names (a collection or an alias); opened on first use."""
        with self._lock:
            target = self._resolve(name)
            found = self._open.get(target)
            if found is not None:
                return found
            if target not in self.folder.collection_names():
                raise ValueError(f"Collection {name} not found")
            config = self.folder.read_config(target)
            shard = qe.EdgeShard.load(str(self.folder.shard_dir(target, config)), edge_config(config))
            found = self._open[target] = OpenCollection(target, shard, config, self._config_saver(target))
            # What was written since the last optimization, as far as counts tell (deletions make it an estimate).
            found.written = max(0, shard.info().points_count - int(config.get("optimized_points", 0)))
            return found

    def _open_collections(self) -> list[OpenCollection]:
        with self._lock:
            return list(self._open.values())

    @property
    def pending_rebuild(self) -> dict[str, Any] | None:
        """What a migration left to do (rebuild the index from PostgreSQL), or None."""
        pending: dict[str, Any] | None = self.catalog.get("pending_rebuild")
        return pending

    async def clear_pending_rebuild(self) -> None:
        def clear() -> None:
            with self._lock:
                self.catalog = {**self.catalog, "pending_rebuild": None}
                self.folder.save_catalog(self.catalog)

        await self._run(clear)

    # --- collections --------------------------------------------------------------------------------------------

    async def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        def exists() -> bool:
            with self._lock:
                return self._resolve(collection_name) in self.folder.collection_names()

        return await self._run(exists)

    async def create_collection(
        self,
        collection_name: str,
        vectors_config: dict[str, models.VectorParams] | None = None,
        sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
        metadata: dict[str, Any] | None = None,
        stored_payload_keys: Sequence[str] = (),
        **kwargs: Any,
    ) -> bool:
        """Qdrant's `create_collection`, plus `stored_payload_keys`: payload keys this collection keeps folded in
        one string, never filtered on (see `edge_payload`)."""
        config = recorded_config(vectors_config, sparse_vectors_config, metadata, stored_payload_keys)
        await self._run(self._create, collection_name, config)
        return True

    def _create(self, name: str, config: dict[str, Any]) -> None:
        with self._lock:
            if name in self.folder.collection_names() or name in self.catalog["aliases"]:
                raise ValueError(f"Collection {name} already exists")
            shard = qe.EdgeShard.create(str(self.folder.shard_dir(name, config)), edge_config(config))
            config = {**config, "idf_exact": True}  # empty: nothing deleted yet
            # Written last: the collection exists from this rename on (see EdgeFolder).
            self.folder.write_config(name, config)
            self._open[name] = OpenCollection(name, shard, config, self._config_saver(name))

    def _config_saver(self, name: str) -> Callable[[dict[str, Any]], None]:
        return functools.partial(self.folder.write_config, name)

    async def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = None, **kwargs: Any
    ) -> models.UpdateResult:
        operation = qe.UpdateOperation.create_field_index(field_name, payload_schema(field_schema))

        def index() -> qe.UpdateOperation:
            if top_level(field_name) in self._collection(collection_name).stored_keys:
                raise StoredKeyError(f"{field_name!r} is a stored payload key of {collection_name}: it has no index")
            return operation

        return await self._update(collection_name, index)

    async def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        def info() -> models.CollectionInfo:
            collection = self._collection(collection_name)
            with collection.use() as shard:
                stats = shard.info()
            return collection_info(collection.config, stats)

        return await self._run(info)

    async def update_collection(
        self, collection_name: str, metadata: dict[str, Any] | None = None, **kwargs: Any
    ) -> bool:
        if any(value is not None for value in kwargs.values()):
            raise UnsupportedRequest(f"update_collection({', '.join(kwargs)}) is not supported here")

        def update() -> None:
            with self._lock:
                collection = self._collection(collection_name)
                with collection.write_lock:
                    metadata_now = {**collection.config["metadata"], **(metadata or {})}
                    collection.save_config({**collection.config, "metadata": metadata_now})

        await self._run(update)
        return True

    async def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        def delete() -> bool:
            with self._lock:
                if collection_name not in self.folder.collection_names():
                    return False
                collection = self._open.pop(collection_name, None)
                if collection is not None:
                    collection.retire()
                aliases = {a: c for a, c in self.catalog["aliases"].items() if c != collection_name}
                if aliases != self.catalog["aliases"]:
                    self._save_aliases(aliases)
                self.folder.remove_collection(collection_name)
                return True

        return await self._run(delete)

    async def get_collections(self, **kwargs: Any) -> models.CollectionsResponse:
        def listing() -> models.CollectionsResponse:
            with self._lock:
                names = self.folder.collection_names()
            return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in names])

        return await self._run(listing)

    async def get_aliases(self, **kwargs: Any) -> models.CollectionsAliasesResponse:
        with self._lock:
            aliases = dict(self.catalog["aliases"])
        return models.CollectionsAliasesResponse(
            aliases=[models.AliasDescription(alias_name=a, collection_name=c) for a, c in aliases.items()]
        )

    async def update_collection_aliases(
        self, change_aliases_operations: Sequence[models.AliasOperations], **kwargs: Any
    ) -> bool:
        """All operations or none, in one write of the catalog: a query sees the old aliases or the new ones."""

        def change() -> None:
            with self._lock:
                aliases = dict(self.catalog["aliases"])
                names = set(self.folder.collection_names())
                for operation in change_aliases_operations:
                    if isinstance(operation, models.CreateAliasOperation):
                        create = operation.create_alias
                        if create.collection_name not in names:
                            raise ValueError(f"Collection {create.collection_name} not found")
                        if create.alias_name in names:
                            raise ValueError(f"Collection {create.alias_name} already exists")
                        aliases[create.alias_name] = create.collection_name
                    elif isinstance(operation, models.DeleteAliasOperation):
                        aliases.pop(operation.delete_alias.alias_name, None)
                    elif isinstance(operation, models.RenameAliasOperation):
                        rename = operation.rename_alias
                        aliases[rename.new_alias_name] = aliases.pop(rename.old_alias_name)
                self._save_aliases(aliases)

        await self._run(change)
        return True

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        catalog = {**self.catalog, "aliases": aliases}
        self.folder.save_catalog(catalog)
        self.catalog = catalog

    # --- points -------------------------------------------------------------------------------------------------

    async def _update(
        self,
        collection_name: str,
        operation: Callable[[], qe.UpdateOperation],
        points: int = 0,
        replaces: Callable[[qe.EdgeShard], bool] | None = None,
    ) -> models.UpdateResult:
        """Build the write (on the engine's thread too: converting a batch is Python work worth keeping off the
        loop) and apply it; `points`: how many it writes; `replaces`: see `OpenCollection.apply`."""

        def update() -> None:
            self._collection(collection_name).apply(operation(), points=points, replaces=replaces)

        await self._run(update)
        return _COMPLETED

    async def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> models.UpdateResult:
        points = list(points)

        def operation() -> qe.UpdateOperation:
            stored = self._collection(collection_name).stored_keys
            return qe.UpdateOperation.upsert_points(convert.to_points(points, stored))

        return await self._update(collection_name, operation, len(points), _any_of([p.id for p in points]))

    async def stored_keys(self, collection_name: str) -> list[str]:
        """The payload keys the collection keeps folded (see `edge_payload`), for a caller that folds them."""
        return await self._run(lambda: sorted(self._collection(collection_name).stored_keys))

    async def upsert_rows(
        self, collection_name: str, rows: Sequence[convert.PointRow], folded_for: Sequence[str] = ()
    ) -> models.UpdateResult:
        """`upsert` of points as plain rows (`edge_convert.to_rows`): how the engine's process receives them,
        their payloads folded for the keys `folded_for` (what `stored_keys` said); refolded when the collection
        keeps others (an alias moved, or the collection was recreated, in between)."""

        def operation() -> qe.UpdateOperation:
            stored = self._collection(collection_name).stored_keys
            batch = rows
            if stored != frozenset(folded_for):
                batch = [(point, vectors, refold(payload, stored)) for point, vectors, payload in rows]
            return qe.UpdateOperation.upsert_points(convert.rows_to_points(batch))

        return await self._update(collection_name, operation, len(rows), _any_of([row[0] for row in rows]))

    async def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> models.UpdateResult:
        if isinstance(points_selector, models.FilterSelector):
            points_selector = points_selector.filter
        if isinstance(points_selector, models.Filter):
            query_filter = points_selector

            def by_filter() -> qe.UpdateOperation:
                edge_filter = convert.to_filter(query_filter, self._collection(collection_name).stored_keys)
                assert edge_filter is not None
                return qe.UpdateOperation.delete_points_by_filter(edge_filter)

            return await self._update(collection_name, by_filter, replaces=_deletes)
        if isinstance(points_selector, models.PointIdsList):
            points_selector = points_selector.points
        ids = list(points_selector)
        return await self._update(collection_name, lambda: qe.UpdateOperation.delete_points(ids), len(ids), _deletes)

    async def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | None = None,
        search_params: models.SearchParams | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> rest.QueryResponse:
        def query_points() -> rest.QueryResponse:
            collection = self._collection(collection_name)
            request = collection.translator.request(
                query=query,
                using=using,
                prefetch=prefetch,
                query_filter=query_filter,
                search_params=search_params,
                limit=limit,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
                score_threshold=score_threshold,
            )
            with collection.use() as shard:
                points = shard.query(request)
            shape = collection.translator.payload_shape(with_payload)
            return rest.QueryResponse(points=convert.scored(points, with_vectors is not False, shape))

        return await self._run(query_points)

    async def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[rest.QueryResponse]:
        """The requests one after another in one hop to the engine's thread, as Qdrant runs a batch in one call."""

        def query_batch_points() -> list[rest.QueryResponse]:
            collection = self._collection(collection_name)
            responses = []
            with collection.use() as shard:
                for item in requests:
                    with_payload = bool(item.with_payload) if item.with_payload is not None else False
                    request = collection.translator.request(
                        query=item.query,
                        using=item.using,
                        prefetch=item.prefetch,
                        query_filter=item.filter,
                        search_params=item.params,
                        limit=item.limit if item.limit is not None else 10,
                        offset=item.offset,
                        with_payload=with_payload,
                        with_vectors=item.with_vector if item.with_vector is not None else False,
                        score_threshold=item.score_threshold,
                    )
                    points = shard.query(request)
                    shape = collection.translator.payload_shape(with_payload)
                    responses.append(
                        rest.QueryResponse(points=convert.scored(points, item.with_vector not in (None, False), shape))
                    )
            return responses

        return await self._run(query_batch_points)

    async def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: models.ExtendedPointId | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        **kwargs: Any,
    ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
        def scroll() -> tuple[list[models.Record], models.ExtendedPointId | None]:
            collection = self._collection(collection_name)
            selector, shape = selection(with_payload, collection.stored_keys)
            request = qe.ScrollRequest(
                offset=offset,
                limit=limit,
                filter=convert.to_filter(scroll_filter, collection.stored_keys),
                with_payload=convert.payload_selector(selector),
                with_vector=convert.vector_selector(with_vectors),
            )
            with collection.use() as shard:
                found, next_offset = shard.scroll(request)
            next_id = convert.point_id(next_offset) if next_offset is not None else None
            return convert.records(found, with_vectors is not False, shape), next_id

        return await self._run(scroll)

    async def retrieve(
        self,
        collection_name: str,
        ids: Sequence[models.ExtendedPointId],
        with_payload: Any = True,
        with_vectors: Any = False,
        **kwargs: Any,
    ) -> list[models.Record]:
        def retrieve() -> list[models.Record]:
            collection = self._collection(collection_name)
            selector, shape = selection(with_payload, collection.stored_keys)
            with collection.use() as shard:
                found = shard.retrieve(
                    list(ids), convert.payload_selector(selector), convert.vector_selector(with_vectors)
                )
            return convert.records(found, with_vectors is not False, shape)

        return await self._run(retrieve)

    async def count(
        self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **kwargs: Any
    ) -> models.CountResult:
        def count() -> int:
            collection = self._collection(collection_name)
            request = qe.CountRequest(exact=exact, filter=convert.to_filter(count_filter, collection.stored_keys))
            with collection.use() as shard:
                return shard.count(request)

        return models.CountResult(count=await self._run(count))

    async def optimize(self, collection_name: str) -> bool:
        """Optimize a collection (merge segments, drop deleted points, build the vector index) on a copy in a
        process of its own, then swap it in: searches and writes go on meanwhile (see `edge_optimizer`). Waits
        for a background optimization of the collection that is running; True when the shard was replaced."""

        def optimize() -> bool:
            return self._optimizer.optimize(self._collection(collection_name))

        return await self._run(optimize)

    def stop_optimizing(self) -> None:
        """Stop the optimizations running (their copies are dropped); `close` does it first."""
        self._optimizer.close()

    async def close(self, **kwargs: Any) -> None:
        if self._closed:
            return
        await self._run(self._close_all)
        self._closed = True
        self._executor.shutdown(wait=True)

    def _close_all(self) -> None:
        self.stop_optimizing()
        if self._auto_optimizer is not None:
            self._auto_optimizer.stop()
        with self._lock:
            for collection in self._open.values():
                with contextlib.suppress(Exception):
                    collection.shard.flush()
                collection.retire()
            self._open.clear()
            self.folder.close()


def _any_of(ids: list[Any]) -> Callable[[qe.EdgeShard], bool]:
    """Whether an upsert of `ids` replaces a point (the replaced version stays in the IDF until a vacuum)."""
    return lambda shard: bool(shard.retrieve(ids, False, False))


def _deletes(shard: qe.EdgeShard) -> bool:
    return True


def _engine_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one call of the engine; its own failures (a bare Exception from Rust) become VectorStoreError."""
    try:
        return function(*args, **kwargs)
    except (ValueError, TypeError, RuntimeError):
        raise
    except Exception as exc:
        if type(exc) is Exception:
            raise VectorStoreError(f"the embedded Qdrant engine failed: {exc}") from exc
        raise
