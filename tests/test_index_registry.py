"""Two processes with a shared PostgreSQL and local Qdrant folders of their own: the second refuses to start and
names the fix; `--reindex` adopts its store; one server on a database of its own starts as before."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bookchat.config import Settings
from bookchat.documents.ingest import IngestPipeline
from bookchat.runtime.index_registry import ForeignVectorStore
from bookchat.runtime.resources import open_resources


async def test_a_second_local_store_on_one_database_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    first = make_settings()
    second = make_settings(collection=first.collection)
    async with AsyncExitStack() as stack:
        resources = await open_resources(first, stack, rate_limits=False)
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, first)
        await pipeline.ingest_document("a.md", "# A\n\nThe first replica's page.")
    # The same server again, on its own folder: starts as before.
    async with AsyncExitStack() as stack:
        await open_resources(first, stack, rate_limits=False)

    with pytest.raises(ForeignVectorStore) as refused:
        async with AsyncExitStack() as stack:
            await open_resources(second, stack, rate_limits=False)
    message = str(refused.value)
    assert str(first.resolved_qdrant_path) in message
    assert str(second.resolved_qdrant_path) in message
    assert "BOOKCHAT_QDRANT_URL" in message
    assert "--reindex" in message

    # `bookchat ingest --reindex` (no collection check, then a rebuild from PostgreSQL) adopts the second store.
    async with AsyncExitStack() as stack:
        resources = await open_resources(second, stack, check_collection=False, rate_limits=False)
        await resources.retriever.ensure_collection()
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, second)
        summary = await pipeline.reindex()
        assert summary.updated == 1
    async with AsyncExitStack() as stack:
        resources = await open_resources(second, stack, rate_limits=False)
        hits = await resources.retriever.search("first replica's page", limit=1)
        assert hits
        assert hits[0].source_path == "a.md"
    with pytest.raises(ForeignVectorStore):
        async with AsyncExitStack() as stack:
            await open_resources(first, stack, rate_limits=False)


async def test_a_wiped_index_is_refused_with_the_rebuild_named(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
        await pipeline.ingest_document("a.md", "# A\n\nA page that must survive a wiped index.")
        await resources.store.run(resources.store.client.delete_collection(settings.collection))
    with pytest.raises(ForeignVectorStore, match="wiped or recreated") as refused:
        async with AsyncExitStack() as stack:
            await open_resources(settings, stack, rate_limits=False)
    assert "--reindex" in str(refused.value)
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, check_collection=False, rate_limits=False)
        await resources.retriever.ensure_collection()
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
        await pipeline.reindex()
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        assert (await resources.retriever.search("survive a wiped index", limit=1))[0].source_path == "a.md"
