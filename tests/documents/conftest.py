"""Fixtures of the documents tests: resources over the test database and local Qdrant, a fresh collection per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.documents.ingest import IngestPipeline, ingest_lock_key
from bookchat.main import open_resources
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.store import VectorStore
from bookchat.runtime.dependencies import Resources


@pytest.fixture(scope="module")
async def resources(make_settings: Callable[..., Settings]) -> AsyncIterator[Resources]:
    """Pool, embedder and a local Qdrant client shared by a module's tests; small chunks to get several."""
    settings = make_settings(chunk_tokens=64, chunk_overlap_tokens=8)
    async with AsyncExitStack() as stack:
        yield await open_resources(settings, stack)


@pytest.fixture
async def pipeline(resources: Resources) -> IngestPipeline:
    """A pipeline over a collection of its own, so tests never see each other's documents."""
    name = f"docs_{uuid.uuid4().hex[:12]}"
    store = VectorStore(resources.store.client, name, kind=resources.store.kind)
    retriever = HybridRetriever(store, resources.embedder, resources.sparse)
    await retriever.ensure_collection()
    settings = resources.settings.model_copy(update={"collection": name})
    return IngestPipeline(resources.database.pool, retriever, resources.embedder, settings)


async def stored_points(pipeline: IngestPipeline) -> list[dict[str, Any]]:
    """Every point's payload (plus its id), sorted by source path and chunk index."""
    client = pipeline.retriever.store.client
    points: list[dict[str, Any]] = []
    offset: models.ExtendedPointId | None = None
    while True:
        batch, offset = await client.scroll(pipeline.collection, limit=256, offset=offset, with_payload=True)
        points += [{**(point.payload or {}), "id": str(point.id)} for point in batch]
        if offset is None:
            break
    return sorted(points, key=lambda p: (p["source_path"], p["chunk_index"]))


async def stored_rows(pipeline: IngestPipeline) -> dict[str, repo.DocumentRow]:
    async with pipeline.pool.acquire() as conn:
        return await repo.fetch_all(conn, pipeline.collection)


async def assert_consistent(pipeline: IngestPipeline) -> None:
    """Rows and points agree: every row is final and clean, has exactly chunk_count points 0..n-1, all of its
    generation, and no point is orphaned."""
    rows = await stored_rows(pipeline)
    points = await stored_points(pipeline)
    by_document: dict[str, list[tuple[int, int]]] = {}
    for point in points:
        by_document.setdefault(point["document_id"], []).append((point.get("generation", 0), point["chunk_index"]))
    for row in rows.values():
        assert row.status == "ready", row.source_path
        assert not row.needs_cleanup, row.source_path
        expected = [(row.generation, index) for index in range(row.chunk_count)]
        assert sorted(by_document.pop(str(row.id), [])) == expected, row.source_path
    assert by_document == {}, "points without a document row"


@asynccontextmanager
async def hold_ingest_lock(pipeline: IngestPipeline) -> AsyncIterator[None]:
    """Hold the collection's ingestion lock as another process would (transaction-scoped), for the block."""
    async with pipeline.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock($1)", ingest_lock_key(pipeline.collection))
        yield


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def section(title: str, sentences: int, topic: str) -> str:
    body = " ".join(f"{topic} fact {i}: the {topic} behaves in way {i}." for i in range(sentences))
    return f"## {title}\n\n{body}\n\n"
