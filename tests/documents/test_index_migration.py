"""A local-mode folder moves to the embedded engine: rebuilt from PostgreSQL at the next start, resumed after a crash,
refused while another process holds it; local mode stays selectable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from bookchat.config import Settings
from bookchat.documents.index_migration import describe, finish_migration
from bookchat.documents.ingest import IngestPipeline
from bookchat.retrieval.store import VectorStoreError
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_folder import is_edge_folder, is_legacy_folder
from bookchat.retrieval.stores.edge_migration import legacy_backup, migrate_legacy_folder, owes_rebuild
from bookchat.retrieval.stores.errors import FolderInUse
from bookchat.runtime.resources import open_resources

PAGES = {
    "guide/sensors.md": "# Sensors\n\nA lidar measures distance with laser pulses and builds a point cloud.",
    "guide/planning.md": "# Planning\n\nThe planner finds a collision-free path for the robot to its goal.",
}


async def legacy_book(settings: Settings) -> None:
    """A book ingested into qdrant-client's local mode, as before this release."""
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        assert resources.store.kind == "local-legacy"
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
        for path, text in PAGES.items():
            await pipeline.ingest_document(path, text)


async def test_a_local_mode_folder_is_rebuilt_into_the_embedded_engine(
    make_settings: Callable[..., Settings],
) -> None:
    legacy = make_settings(vector_store="local-legacy")
    await legacy_book(legacy)
    root = legacy.resolved_qdrant_path
    assert is_legacy_folder(root)
    assert owes_rebuild(root)
    settings = legacy.model_copy(update={"vector_store": "edge"})
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        assert resources.store.kind == "edge"
        owed = resources.store.owed_rebuild
        assert owed is not None
        assert str(legacy_backup(root)) in describe(owed)
        summary = await finish_migration(resources.database.pool, resources.retriever, resources.embedder, settings)
        assert summary is not None
        assert summary.updated == len(PAGES)
        assert resources.store.owed_rebuild is None
        hits = await resources.retriever.search("laser point cloud", limit=1)
        assert hits[0].source_path == "guide/sensors.md"
    assert is_edge_folder(root)
    assert is_legacy_folder(legacy_backup(root))  # kept: the way back
    assert not owes_rebuild(root)
    # The next start claims the rebuilt index as this database's, with nothing left to do.
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        assert (
            await finish_migration(resources.database.pool, resources.retriever, resources.embedder, settings) is None
        )
        assert await resources.store.count() >= len(PAGES)


async def test_a_migration_interrupted_before_its_rebuild_resumes(make_settings: Callable[..., Settings]) -> None:
    legacy = make_settings(vector_store="local-legacy")
    await legacy_book(legacy)
    root = legacy.resolved_qdrant_path
    # Dropped from the database after the move: the rebuild must carry its chunks over from the kept folder.
    async with AsyncExitStack() as stack:
        resources = await open_resources(legacy, stack, rate_limits=False)
        async with resources.database.pool.acquire() as conn:
            await conn.execute(
                "UPDATE documents SET source = NULL WHERE collection = $1 AND source_path = $2",
                legacy.collection,
                "guide/planning.md",
            )
    assert await asyncio.to_thread(migrate_legacy_folder, root) == legacy_backup(root)
    # The process died here; the next one finds the debt recorded in the folder and pays it.
    settings = legacy.model_copy(update={"vector_store": "edge"})
    assert owes_rebuild(root)
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        summary = await finish_migration(resources.database.pool, resources.retriever, resources.embedder, settings)
        assert summary is not None
        hits = await resources.retriever.search("collision-free path to the goal", limit=1)
        assert hits[0].source_path == "guide/planning.md"


def test_a_crash_between_the_two_renames_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "qdrant"
    root.mkdir()
    (root / "meta.json").write_text('{"collections": {}, "aliases": {}}')
    staging = tmp_path / "qdrant.edge-new"
    migrate_legacy_folder(root)
    # Replay the state between the renames: the old folder kept, the new one not in place yet.
    root.rename(staging)
    assert owes_rebuild(root)
    assert migrate_legacy_folder(root) == legacy_backup(root)
    assert is_edge_folder(root)
    assert migrate_legacy_folder(root) is None  # nothing left to move
    assert migrate_legacy_folder(tmp_path / "new") is None


async def test_a_local_mode_folder_in_use_is_not_moved(tmp_path: Path) -> None:
    root = tmp_path / "qdrant"
    holder = AsyncQdrantClient(path=str(root))
    with pytest.raises(FolderInUse, match="in use by another bookchat process"):
        migrate_legacy_folder(root)
    assert is_legacy_folder(root)
    assert not (tmp_path / "qdrant.edge-new").exists()
    await holder.close()
    (tmp_path / "qdrant.local-mode").mkdir()
    with pytest.raises(VectorStoreError, match="exists already"):
        migrate_legacy_folder(root)


async def test_each_engine_refuses_the_others_folder_with_the_fix(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    client = EdgeQdrantClient(settings.resolved_qdrant_path)
    await client.close()
    with pytest.raises(VectorStoreError, match="BOOKCHAT_VECTOR_STORE"):
        async with AsyncExitStack() as stack:
            await open_resources(settings.model_copy(update={"vector_store": "local-legacy"}), stack)
    legacy = make_settings(vector_store="local-legacy")
    holder = AsyncQdrantClient(path=str(legacy.resolved_qdrant_path))
    await holder.close()
    with pytest.raises(VectorStoreError, match="local-legacy"):
        EdgeQdrantClient(legacy.resolved_qdrant_path)


async def test_the_terminal_shows_one_message_and_a_bar(make_settings: Callable[..., Settings]) -> None:
    import io

    from rich.console import Console

    from bookchat.documents.terminal import migrate_with_progress

    legacy = make_settings(vector_store="local-legacy")
    await legacy_book(legacy)
    settings = legacy.model_copy(update={"vector_store": "edge"})
    screen = io.StringIO()
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        await migrate_with_progress(resources, Console(file=screen, width=200))
        assert resources.store.owed_rebuild is None
        await migrate_with_progress(resources, Console(file=screen, width=200))  # nothing owed: silent
    text = screen.getvalue()
    assert text.count("moves to Qdrant's embedded engine") == 1
    assert f"index rebuilt: {len(PAGES)} documents" in text
