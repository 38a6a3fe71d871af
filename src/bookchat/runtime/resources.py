"""The process-wide resources (pool, vector store, models, LLM, rate limiter), opened once and closed at exit."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bookchat.config import Settings
from bookchat.retrieval.embeddings import Embedder, create_embedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore, open_qdrant_client
from bookchat.retrieval.stores.edge_migration import migrate_legacy_folder
from bookchat.runtime.database import Database
from bookchat.runtime.index_registry import claim_index

if TYPE_CHECKING:
    from bookchat.llm.provider import LLM
    from bookchat.runtime.rate_limiter import RateLimiter


@dataclass
class Resources:
    """Everything a request may need, opened once in the app's lifespan and closed at shutdown."""

    settings: Settings
    database: Database
    store: VectorStore
    embedder: Embedder
    sparse: Bm25Encoder
    retriever: HybridRetriever
    llm: LLM | None
    limiter: RateLimiter | None


async def open_store(settings: Settings) -> VectorStore:
    """The configured vector store; a local-mode folder where the embedded engine is configured is moved aside
    first (its index is then rebuilt from PostgreSQL, see `pending_rebuild`)."""
    kind = settings.resolved_vector_store
    path = settings.resolved_qdrant_path
    if kind == "edge":
        await asyncio.to_thread(migrate_legacy_folder, path)
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = await asyncio.to_thread(
        open_qdrant_client,
        settings.qdrant_url,
        api_key,
        path,
        kind,
        engine_process=settings.edge_process,
        optimize_after=settings.edge_optimize_after,
    )
    location = settings.qdrant_url or f"local folder {path} on {socket.gethostname()}"
    return VectorStore(client, settings.collection, kind=kind, location=location)


async def open_resources(
    settings: Settings, stack: AsyncExitStack, *, check_collection: bool = True, rate_limits: bool = True
) -> Resources:
    """Open the pool, the vector store and the models; `stack` closes them in reverse order.

    `check_collection=False` skips creating the collection and checking its embedding model: for
    `bookchat ingest --reindex`, which rebuilds it. `rate_limits=False` opens no rate limiter: for CLI
    commands, which serve no requests (and start faster without the web stack the limiter imports).
    """
    # Loading the ONNX model takes most of a second, largely outside the GIL: it runs in a thread while the
    # pool opens, migrations run and the local Qdrant reads its folder.
    loading = asyncio.ensure_future(asyncio.to_thread(create_embedder, settings))
    try:
        database = Database(settings)
        await database.open()
        stack.push_async_callback(database.close)

        store = await open_store(settings)
        stack.push_async_callback(store.close)
    except BaseException:
        # A thread cannot be cancelled: wait for it so its result (or error) is not left unretrieved.
        await asyncio.gather(loading, return_exceptions=True)
        raise
    embedder = await loading
    sparse = Bm25Encoder()
    retriever = HybridRetriever(
        store,
        embedder,
        sparse,
        rrf_k=settings.rrf_k,
        prefetch_limit=settings.prefetch_limit,
        fusion=settings.fusion,
    )
    if check_collection:
        await retriever.ensure_collection()
        if store.owed_rebuild is None:
            # A folder that still owes its rebuild holds no index yet: the rebuild records it when complete.
            async with database.pool.acquire() as conn:
                await claim_index(conn, store)

    llm = None
    if settings.resolved_llm_provider != "none":
        # Imported only here: the Agents SDK takes seconds to import, and extractive answers, ingestion and
        # search never need it.
        from bookchat.llm.provider import create_llm

        llm = create_llm(settings)
    if llm is not None:
        stack.push_async_callback(llm.aclose)
    limiter = None
    if rate_limits:
        # Imported here: CLI commands open no limiter and skip importing `limits` and its storage back-ends.
        from bookchat.runtime.rate_limiter import create_rate_limiter

        limiter = create_rate_limiter(settings)
        stack.push_async_callback(limiter.close)
    return Resources(
        settings=settings,
        database=database,
        store=store,
        embedder=embedder,
        sparse=sparse,
        retriever=retriever,
        llm=llm,
        limiter=limiter,
    )
