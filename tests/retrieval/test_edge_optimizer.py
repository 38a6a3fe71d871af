"""The embedded engine's optimizer: a copy optimized in a process of its own and swapped in, while searches and
writes go on; the same answers after it as before; nothing lost when it fails, is stopped or crashes half-way;
and the automatic optimizer that runs it after enough writes."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from bookchat.retrieval.search import SearchFilters, _filter
from bookchat.retrieval.store import DENSE_VECTOR, SPARSE_VECTOR
from bookchat.retrieval.stores import edge_optimizer
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.retrieval.stores.errors import VectorStoreError
from tests.retrieval.test_edge_store import (
    SPARSE,
    VECTORS,
    assert_same_ranking,
    sparse_vector,
    twin_collections,
    unit,
)

# Enough points, replaced and deleted, for the engine's optimizer to have work (it vacuums from 1,000 points).
POINTS = 1500


async def optimizable_twins(rng: random.Random, edge: Any) -> AsyncQdrantClient:
    """`twin_collections` of POINTS points with a third of them deleted: enough for the optimizer to vacuum."""
    local = await twin_collections(rng, edge, POINTS)
    third = models.PointIdsList(points=[str(uuid.UUID(int=1000 + n)) for n in range(0, POINTS, 3)])
    for client in (local, edge):
        await client.delete("chunks", points_selector=third)
    return local


def recorded(root: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((root / "collections" / "chunks" / "collection.json").read_text())
    return config


def shard_folders(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "collections" / "chunks").iterdir() if p.is_dir())


async def assert_same_answers(rng: random.Random, edge: Any, local: AsyncQdrantClient) -> None:
    guide = _filter(SearchFilters(path_prefix="guide"))
    for number in range(12):
        query_filter = guide if number % 2 else None
        request: dict[str, Any] = {
            "prefetch": [
                models.Prefetch(query=unit(rng), using=DENSE_VECTOR, limit=20, filter=query_filter),
                models.Prefetch(query=sparse_vector(rng, 60, 3), using=SPARSE_VECTOR, limit=20, filter=query_filter),
            ],
            "query": models.FusionQuery(fusion=models.Fusion.DBSF),
            "limit": 8,
        }
        assert_same_ranking(
            (await edge.query_points("chunks", **request)).points,
            (await local.query_points("chunks", **request)).points,
        )
    assert (await edge.count("chunks")).count == (await local.count("chunks", exact=True)).count


@pytest.mark.parametrize("engine", ["threads", "process"])
async def test_an_optimized_collection_answers_as_before_and_replaces_its_shard(engine: str, tmp_path: Path) -> None:
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root) if engine == "threads" else EdgeProcessClient(root)
    rng = random.Random(3)
    local = await optimizable_twins(rng, edge)
    assert recorded(root)["idf_exact"] is False  # deleted points count in the IDF until they are vacuumed
    assert await edge.optimize("chunks") is True
    # Every deleted point vacuumed: the answers below come without the live-points IDF filter.
    assert recorded(root)["idf_exact"] is True
    shard = recorded(root)["shard"]
    assert shard.startswith("shard-")
    assert shard_folders(root) == [shard]  # the old shard is gone
    assert recorded(root)["optimized_points"] == (await local.count("chunks", exact=True)).count
    await assert_same_answers(rng, edge, local)
    await edge.upsert("chunks", [])
    assert await edge.optimize("chunks") is False  # nothing left to do: the shard stays
    assert recorded(root)["shard"] == shard
    assert shard_folders(root) == [shard]
    await edge.close()
    reopened = EdgeProcessClient(root)
    await assert_same_answers(rng, reopened, local)
    await reopened.close()
    await local.close()


async def test_searches_and_writes_go_on_while_a_copy_is_optimized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child is held until the test has searched and written; what it wrote meanwhile is in the swapped-in
    shard: the collection then equals a local-mode twin that received the same writes."""
    child_started, writes_done = threading.Event(), threading.Event()
    run_child = edge_optimizer.ShardOptimizer._run_child

    def held_child(self: edge_optimizer.ShardOptimizer, copy: Path) -> bool:
        child_started.set()
        assert writes_done.wait(30)
        return run_child(self, copy)

    monkeypatch.setattr(edge_optimizer.ShardOptimizer, "_run_child", held_child)
    edge = EdgeQdrantClient(tmp_path / "edge")
    rng = random.Random(8)
    local = await optimizable_twins(rng, edge)
    optimizing = asyncio.create_task(edge.optimize("chunks"))
    assert await asyncio.to_thread(child_started.wait, 30)
    await assert_same_answers(rng, edge, local)  # searches are answered by the live shard
    extra = [
        models.PointStruct(
            id=str(uuid.UUID(int=5000 + n)),
            vector={DENSE_VECTOR: unit(rng), SPARSE_VECTOR: sparse_vector(rng, 60, 4)},
            payload={"document_id": "new", "path_prefixes": ["guide"], "text": f"new {n}", "generation": 0},
        )
        for n in range(25)
    ]
    gone = models.PointIdsList(points=[str(uuid.UUID(int=1000 + n)) for n in range(0, 300, 7)])
    by_filter = models.FilterSelector(filter=_filter(SearchFilters(path_prefix="api/chat.md")))
    for client in (local, edge):
        await client.upsert("chunks", extra)
        await client.delete("chunks", points_selector=gone)
        await client.delete("chunks", points_selector=by_filter)
    writes_done.set()
    assert await optimizing is True
    assert recorded(tmp_path / "edge")["idf_exact"] is False  # the deletions replayed onto the copy count again
    await assert_same_answers(rng, edge, local)
    await edge.close()
    reopened = EdgeQdrantClient(tmp_path / "edge")  # the journaled writes are in the new shard's own log
    await assert_same_answers(rng, reopened, local)
    await reopened.close()
    await local.close()


async def test_a_failed_optimization_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        edge_optimizer.helper_process, "module_command", lambda *args: [sys.executable, "-c", "raise SystemExit(1)"]
    )
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root)
    rng = random.Random(4)
    local = await twin_collections(rng, edge)
    with pytest.raises(VectorStoreError, match="optimizer stopped"):
        await edge.optimize("chunks")
    assert shard_folders(root) == ["shard"]  # the copy is gone
    assert "shard" not in recorded(root)
    await edge.upsert("chunks", [])  # writes are no longer journaled
    await assert_same_answers(rng, edge, local)
    await edge.close()
    await local.close()


async def test_an_unfinished_copy_is_removed_when_the_folder_opens(tmp_path: Path) -> None:
    """A crash during an optimization leaves a shard folder the collection does not name."""
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root)
    rng = random.Random(6)
    local = await twin_collections(rng, edge)
    await edge.close()
    (root / "collections" / "chunks" / "shard-0badc0de" / "segments").mkdir(parents=True)
    reopened = EdgeQdrantClient(root)
    assert shard_folders(root) == ["shard"]
    await assert_same_answers(rng, reopened, local)
    await reopened.close()
    await local.close()


async def test_closing_stops_a_running_optimization_and_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        edge_optimizer.helper_process,
        "module_command",
        lambda *args: [sys.executable, "-c", "import time; time.sleep(60)"],
    )
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root)
    rng = random.Random(2)
    local = await twin_collections(rng, edge)
    optimizing = asyncio.create_task(edge.optimize("chunks"))
    for _ in range(200):
        if edge._optimizer._children:
            break
        await asyncio.sleep(0.05)
    began = time.monotonic()
    await edge.close()
    assert time.monotonic() - began < 10  # the sleeping child was killed, not waited for
    assert await optimizing is False  # stopped: nothing changed
    reopened = EdgeQdrantClient(root)
    assert shard_folders(root) == ["shard"]
    await assert_same_answers(rng, reopened, local)
    await reopened.close()
    await local.close()


async def test_a_collection_deleted_while_it_is_optimized_stays_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child_started, deleted = threading.Event(), threading.Event()
    run_child = edge_optimizer.ShardOptimizer._run_child

    def held_child(self: edge_optimizer.ShardOptimizer, copy: Path) -> bool:
        child_started.set()
        assert deleted.wait(30)
        return run_child(self, copy)

    monkeypatch.setattr(edge_optimizer.ShardOptimizer, "_run_child", held_child)
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root)
    local = await twin_collections(random.Random(1), edge)
    optimizing = asyncio.create_task(edge.optimize("chunks"))
    assert await asyncio.to_thread(child_started.wait, 30)
    assert await edge.delete_collection("chunks") is True
    deleted.set()
    assert await optimizing is False
    assert not await edge.collection_exists("chunks")
    assert not (root / "collections" / "chunks").exists()
    await edge.close()
    await local.close()


@pytest.mark.parametrize("engine", ["threads", "process"])
async def test_the_engine_optimizes_by_itself_after_enough_writes_and_a_pause(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_optimizer, "QUIET_S", 0.3)
    monkeypatch.setattr(edge_optimizer, "POLL_S", 0.1)
    root = tmp_path / "edge"
    if engine == "threads":
        edge: Any = EdgeQdrantClient(root, optimize_after=200)
    else:
        # The engine's process reads its own module constants: it waits the default pause.
        edge = EdgeProcessClient(root, optimize_after=200)
    rng = random.Random(12)
    local = await optimizable_twins(rng, edge)  # then replacements and deletions: enough to vacuum
    deadline = time.monotonic() + 60
    while "shard" not in recorded(root):
        assert time.monotonic() < deadline, "the collection was not optimized"
        await asyncio.sleep(0.1)
    await assert_same_answers(rng, edge, local)
    if engine == "threads":
        collection = edge._collection("chunks")
        optimized = recorded(root)["shard"]
        collection.written = 500  # as if counted on opening a folder whose shard an older bookchat optimized
        # It finds nothing to do: it records so, drops its copy, and does not swap (nor will it look again).
        while collection.written or shard_folders(root) != [optimized]:
            assert time.monotonic() < deadline, "the automatic optimizer did not look again"
            await asyncio.sleep(0.1)
        assert recorded(root)["shard"] == optimized
        await asyncio.sleep(0.5)
        assert shard_folders(root) == [optimized]
    await edge.close()
    await local.close()


def test_the_automatic_optimizer_waits_for_a_pause_and_backs_off_after_a_failure(tmp_path: Path) -> None:
    edge = EdgeQdrantClient(tmp_path / "edge", optimize_after=100)

    async def build() -> None:
        await edge.create_collection("chunks", vectors_config=VECTORS, sparse_vectors_config=SPARSE)

    asyncio.run(build())
    collection = edge._collection("chunks")
    auto = edge._auto_optimizer
    assert auto is not None
    now = time.monotonic()
    collection.written, collection.last_write = 99, now - 60
    assert not auto.due(collection, now)  # not enough writes
    collection.written = 100
    assert auto.due(collection, now)
    collection.last_write = now - 1
    assert not auto.due(collection, now)  # still writing
    collection.last_write = now - 60
    auto._failed_at["chunks"] = now - 10
    assert not auto.due(collection, now)  # failed a moment ago
    assert auto.due(collection, now + edge_optimizer.RETRY_AFTER_S)
    asyncio.run(edge.close())


async def test_the_idf_is_exact_while_no_point_was_deleted_or_replaced(tmp_path: Path) -> None:
    """Inserts keep a collection exact; a replacement or a deletion makes it ask for live-point IDF (recorded on
    disk before the write), until an optimization vacuums the dead points; sparse scores equal Qdrant's throughout."""
    root = tmp_path / "edge"
    edge = EdgeQdrantClient(root)
    rng = random.Random(21)
    local = AsyncQdrantClient(location=":memory:")

    def point(number: int) -> models.PointStruct:
        return models.PointStruct(
            id=number + 1,
            vector={DENSE_VECTOR: unit(rng), SPARSE_VECTOR: sparse_vector(rng, 40, 5)},
            payload={"document_id": "d", "path_prefixes": ["guide"], "text": f"p {number}", "generation": 0},
        )

    async def same_sparse_answers() -> None:
        for _ in range(10):
            request: dict[str, Any] = {"query": sparse_vector(rng, 40, 2), "using": SPARSE_VECTOR, "limit": 10}
            assert_same_ranking(
                (await edge.query_points("chunks", **request)).points,
                (await local.query_points("chunks", **request)).points,
            )

    for client in (local, edge):
        await client.create_collection("chunks", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    first, second = [point(n) for n in range(1200)], [point(n) for n in range(1200, 1400)]
    for client in (local, edge):
        await client.upsert("chunks", first)
        await client.upsert("chunks", second)
    assert recorded(root)["idf_exact"] is True  # only new points so far
    collection = edge._collection("chunks")
    assert collection.translator._params(None, SPARSE_VECTOR) is None  # no live-points filter asked for
    await same_sparse_answers()
    replaced = [point(n) for n in range(0, 1200, 4)]
    for client in (local, edge):
        await client.upsert("chunks", replaced)
    assert recorded(root)["idf_exact"] is False
    assert collection.translator._params(None, SPARSE_VECTOR) is not None
    # Under the default vacuum threshold (20 % deleted): only bookchat's optimizer settings drop these.
    few = models.PointIdsList(points=list(range(1, 1400, 20)))
    for client in (local, edge):
        await client.delete("chunks", points_selector=few)
    await same_sparse_answers()
    assert await edge.optimize("chunks") is True
    assert recorded(root)["idf_exact"] is True
    assert collection.translator._params(None, SPARSE_VECTOR) is None
    await same_sparse_answers()
    for client in (local, edge):
        await client.delete("chunks", points_selector=models.PointIdsList(points=[2, 3, 5]))
    assert recorded(root)["idf_exact"] is False
    await edge.close()
    reopened = EdgeQdrantClient(root)  # read back from collection.json
    assert reopened._collection("chunks").idf_exact is False
    await reopened.close()
    await local.close()
