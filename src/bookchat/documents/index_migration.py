"""Finishing a move to the embedded engine: the index rebuilt from PostgreSQL's stored text, then the folder's debt
cleared (see `retrieval.stores.edge_migration` for the file part, done when the store opens)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.documents.ingest import IngestPipeline
from bookchat.documents.ingest_summary import IngestSummary, ProgressCallback
from bookchat.retrieval.embeddings import Embedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.store import VectorStore, open_qdrant_client

log = logging.getLogger(__name__)


def describe(pending: dict[str, Any]) -> str:
    """The one message a migration prints."""
    kept = pending.get("legacy_folder")
    return (
        "The vector index moves to Qdrant's embedded engine (qdrant-edge): it is rebuilt from the text PostgreSQL "
        "keeps, once. "
        + (f"The old local-mode folder is kept at {kept}; delete it when you are satisfied. " if kept else "")
        + "Interrupted, it resumes at the next start."
    )


@contextlib.asynccontextmanager
async def legacy_chunks(pipeline: IngestPipeline, pending: dict[str, Any]) -> AsyncIterator[VectorStore | None]:
    """The old local-mode folder as a store, when some document has no stored bytes to rebuild from (ingested
    before sources were kept): its chunks are carried over as they are. None when every document has its bytes."""
    folder = Path(str(pending.get("legacy_folder") or ""))
    if not pending.get("legacy_folder") or not await asyncio.to_thread(folder.is_dir):
        yield None
        return
    async with pipeline.pool.acquire() as conn:
        missing = await repo.count_without_source(conn, pipeline.collection)
    if not missing:
        yield None
        return
    client = open_qdrant_client(None, None, folder, "local-legacy")
    store = VectorStore(client, pipeline.collection, kind="local-legacy", location=str(folder))
    try:
        yield store
    finally:
        await store.close()


async def finish_migration(
    pool: asyncpg.Pool,
    retriever: HybridRetriever,
    embedder: Embedder,
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
) -> IngestSummary | None:
    """Rebuild the index into the embedded engine when its folder owes that (None when it does not), like
    `bookchat ingest --reindex`: into a new collection that becomes the live one when complete, then recorded as
    this database's index. A failure leaves the debt recorded, so the next start tries again."""
    pending = retriever.store.owed_rebuild
    if pending is None:
        return None
    log.warning(describe(pending))
    pipeline = IngestPipeline(pool, retriever, embedder, settings)
    async with legacy_chunks(pipeline, pending) as carry_from:
        pipeline.carry_from = carry_from
        summary = await pipeline.reindex(progress=progress)
    await retriever.store.clear_owed_rebuild()
    log.info(
        "vector index rebuilt in the embedded engine",
        extra={"documents": summary.added + summary.updated, "chunks": summary.chunks},
    )
    return summary
