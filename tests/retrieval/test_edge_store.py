"""The embedded engine (qdrant-edge behind Qdrant's client API): the same results as qdrant-client's `query_points`,
collections, aliases and metadata that survive a restart, one process per folder, and calls off the event loop."""

from __future__ import annotations

import random
import threading
import uuid
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models

from bookchat.retrieval.search import SearchFilters, _filter, _generation_condition
from bookchat.retrieval.store import DENSE_VECTOR, SPARSE_VECTOR, VectorStore
from bookchat.retrieval.stores import edge_client
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_convert import to_rows
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.retrieval.stores.errors import FolderInUse, UnsupportedRequest, VectorStoreError

EdgeEngine = EdgeQdrantClient | EdgeProcessClient
DOCUMENTS = [str(uuid.UUID(int=number)) for number in range(1, 6)]
FUSIONS = [
    models.FusionQuery(fusion=models.Fusion.DBSF),
    models.FusionQuery(fusion=models.Fusion.RRF),
    models.RrfQuery(rrf=models.Rrf(k=60)),
]
VECTORS = {DENSE_VECTOR: models.VectorParams(size=8, distance=models.Distance.DOT)}
SPARSE = {SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}


def unit(rng: random.Random, size: int = 8) -> list[float]:
    vector = np.array([rng.gauss(0, 1) for _ in range(size)])
    return [float(x) for x in vector / np.linalg.norm(vector)]


def sparse_vector(rng: random.Random, vocabulary: int, size: int) -> models.SparseVector:
    indices = sorted(rng.sample(range(vocabulary), size))
    return models.SparseVector(indices=indices, values=[rng.uniform(0.1, 2.0) for _ in indices])


async def twin_collections(
    rng: random.Random, edge: EdgeEngine, points: int = 300, stored: tuple[str, ...] = ()
) -> AsyncQdrantClient:
    """The same writes into qdrant-client's local mode and the embedded engine: `points` points laid out like
    bookchat's, then replacements, deletions by id and deletions by filter (as re-ingestion makes them); the
    embedded collection keeps the payload keys `stored` folded (`edge_payload`)."""
    local = AsyncQdrantClient(location=":memory:")

    def point(number: int) -> models.PointStruct:
        path = rng.choice(["guide/intro.md", "guide/deploy.md", "api/chat.md"])
        payload: dict[str, Any] = {
            "document_id": rng.choice(DOCUMENTS),
            "path_prefixes": ["guide", path] if path.startswith("guide/") else [path],
            "text": f"point {number}",
            "generation": rng.choice([0, 1, 2]),
        }
        sparse = sparse_vector(rng, 60, rng.randint(0, 6))
        vector: dict[str, Any] = {DENSE_VECTOR: unit(rng)}
        if sparse.indices:
            vector[SPARSE_VECTOR] = sparse
        return models.PointStruct(id=str(uuid.UUID(int=1000 + number)), vector=vector, payload=payload)

    first = [point(number) for number in range(points)]
    replaced = [point(number) for number in rng.sample(range(points), points * 2 // 15)]
    deleted = models.PointIdsList(
        points=[str(uuid.UUID(int=1000 + n)) for n in rng.sample(range(points), points // 10)]
    )
    by_filter = models.FilterSelector(
        filter=models.Filter(
            must=[
                models.FieldCondition(key="document_id", match=models.MatchValue(value=DOCUMENTS[2])),
                _generation_condition(1),
            ]
        )
    )
    await local.create_collection("chunks", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    await edge.create_collection(
        "chunks", vectors_config=VECTORS, sparse_vectors_config=SPARSE, stored_payload_keys=stored
    )
    for client in (local, edge):
        await client.upsert("chunks", first)
        await client.upsert("chunks", replaced)
        await client.delete("chunks", points_selector=deleted)
        await client.delete("chunks", points_selector=by_filter)
    return local


def assert_same_ranking(got: list[models.ScoredPoint], expected: list[models.ScoredPoint]) -> None:
    """Same scores in the same order (float32 arithmetic: to 1e-5), the same points for each score, the same
    payloads; only points of equal score may come in another order."""
    assert [p.score for p in got] == pytest.approx([p.score for p in expected], rel=1e-5, abs=1e-6)

    def groups(points: list[models.ScoredPoint]) -> list[set[str]]:
        grouped: list[set[str]] = []
        last: float | None = None
        for p in points:
            if last is None or abs(p.score - last) > 1e-5 * max(1.0, abs(last)):
                grouped.append(set())
            grouped[-1].add(str(p.id))
            last = p.score
        return grouped

    got_groups, expected_groups = groups(got), groups(expected)
    # The last group may be cut by the limit at another member of the tie.
    assert got_groups[:-1] == expected_groups[:-1]
    payloads = {str(p.id): p.payload for p in expected}
    for p in got:
        if str(p.id) in payloads:
            assert p.payload == payloads[str(p.id)]


@pytest.fixture(params=["threads", "process"])
async def edge(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The engine on this process's threads, and in a process of its own (the default): the same answers."""
    client = EdgeQdrantClient(tmp_path / "edge") if request.param == "threads" else EdgeProcessClient(tmp_path / "edge")
    yield client
    await client.close()


@pytest.mark.parametrize("stored", [(), ("text",)], ids=["payload", "text-stored"])
@pytest.mark.parametrize("fusion", FUSIONS, ids=["dbsf", "rrf-default", "rrf-k60"])
async def test_hybrid_queries_equal_qdrant_clients_own(
    fusion: models.FusionQuery | models.RrfQuery, stored: tuple[str, ...], edge: EdgeEngine
) -> None:
    rng = random.Random(11)
    local = await twin_collections(rng, edge, stored=stored)
    filters = [
        None,
        SearchFilters(document_ids=(DOCUMENTS[0], DOCUMENTS[3])),
        SearchFilters(path_prefix="guide"),
        SearchFilters(document_ids=(DOCUMENTS[1],), path_prefix="api/chat.md"),
    ]
    compared = 0
    for query_number in range(40):
        dense, sparse = unit(rng), sparse_vector(rng, 60, rng.randint(1, 4))
        query_filter = _filter(filters[query_number % len(filters)])
        fetch, limit = rng.choice([(5, 3), (20, 6), (100, 6), (100, 100)])
        request: dict[str, Any] = {
            "prefetch": [
                models.Prefetch(query=dense, using=DENSE_VECTOR, limit=fetch, filter=query_filter),
                models.Prefetch(query=sparse, using=SPARSE_VECTOR, limit=fetch, filter=query_filter),
            ],
            "query": fusion,
            "limit": limit,
            "with_payload": True,
        }
        expected = (await local.query_points("chunks", **request)).points
        got = (await edge.query_points("chunks", **request)).points
        assert_same_ranking(got, expected)
        compared += len(got)
    assert compared > 400  # the queries found something to compare
    await local.close()


async def test_single_list_queries_equal_qdrant_clients_own(edge: EdgeEngine) -> None:
    rng = random.Random(5)
    local = await twin_collections(rng, edge)
    for query_number in range(30):
        query_filter = _filter(SearchFilters(path_prefix="guide")) if query_number % 2 else None
        dense, sparse = unit(rng), sparse_vector(rng, 60, rng.randint(1, 4))
        for query, using in ((dense, DENSE_VECTOR), (sparse, SPARSE_VECTOR)):
            request: dict[str, Any] = {"query": query, "using": using, "query_filter": query_filter, "limit": 10}
            assert_same_ranking(
                (await edge.query_points("chunks", **request)).points,
                (await local.query_points("chunks", **request)).points,
            )
    assert (await edge.count("chunks")).count == (await local.count("chunks", exact=True)).count
    await local.close()


async def test_batch_queries_equal_qdrant_clients_own(edge: EdgeEngine) -> None:
    rng = random.Random(9)
    local = await twin_collections(rng, edge)
    guide = _filter(SearchFilters(path_prefix="guide"))
    requests = [
        models.QueryRequest(
            query=models.SparseVector(indices=[term], values=[1.0]),
            using=SPARSE_VECTOR,
            filter=guide if term % 2 else None,
            limit=1,
            with_payload=False,
        )
        for term in range(0, 70, 3)  # the vocabulary is 0-59: the last few terms occur nowhere
    ] + [models.QueryRequest(query=unit(rng), using=DENSE_VECTOR, limit=4, with_payload=True)]
    got = await edge.query_batch_points("chunks", requests)
    expected = await local.query_batch_points("chunks", requests)
    assert len(got) == len(requests)
    for mine, theirs in zip(got, expected, strict=True):
        assert_same_ranking(mine.points, theirs.points)
    assert got[-1].points[0].payload  # payload where the request asks for it
    assert not any(response.points for response in got[-4:-1])  # absent terms find nothing
    await local.close()


async def test_collections_aliases_and_metadata_survive_a_restart(tmp_path: Path) -> None:
    client = EdgeQdrantClient(tmp_path / "edge")
    await client.create_collection("a", vectors_config=VECTORS, sparse_vectors_config=SPARSE, metadata={"m": 1})
    await client.create_collection("b", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    point = models.PointStruct(id=str(uuid.UUID(int=7)), vector={DENSE_VECTOR: [1.0] + [0.0] * 7}, payload={"x": 1})
    await client.upsert("b", [point])
    await client.update_collection("a", metadata={"n": 2})
    await client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="b", alias_name="live"))
        ]
    )
    with pytest.raises(ValueError, match="already exists"):
        await client.create_collection("a", vectors_config=VECTORS)
    await client.close()

    reopened = EdgeQdrantClient(tmp_path / "edge")
    assert {c.name for c in (await reopened.get_collections()).collections} == {"a", "b"}
    assert (await reopened.get_collection("a")).config.metadata == {"m": 1, "n": 2}
    assert [(a.alias_name, a.collection_name) for a in (await reopened.get_aliases()).aliases] == [("live", "b")]
    assert await reopened.collection_exists("live")
    records = await reopened.retrieve("live", [point.id], with_vectors=True)
    assert records[0].payload == {"x": 1}
    assert records[0].vector == {DENSE_VECTOR: [1.0] + [0.0] * 7}
    batch, offset = await reopened.scroll("live", limit=10)
    assert [r.id for r in batch] == [point.id]
    assert offset is None
    # Deleting a collection drops the aliases naming it.
    assert await reopened.delete_collection("b") is True
    assert await reopened.delete_collection("b") is False
    assert (await reopened.get_aliases()).aliases == []
    with pytest.raises(ValueError, match="not found"):
        await reopened.count("live")
    await reopened.close()


async def test_the_alias_switch_of_a_rebuild_works_on_the_embedded_engine(tmp_path: Path) -> None:
    store = VectorStore(EdgeQdrantClient(tmp_path / "edge"), "book", kind="edge")
    assert await store.ensure_collection("model", 8) is True
    schema = (await store.client.get_collection("book")).payload_schema
    assert {field: index.data_type for field, index in schema.items()} == {
        "document_id": models.PayloadSchemaType.KEYWORD,
        "path_prefixes": models.PayloadSchemaType.KEYWORD,
        "generation": models.PayloadSchemaType.INTEGER,
    }
    rebuilt = store.rebuild_name()
    await store.ensure_collection("model", 8, name=rebuilt)
    await store.switch_to(rebuilt)
    assert await store.physical_name() == rebuilt
    assert await store.count() == 0
    abandoned = store.rebuild_name()
    await store.ensure_collection("model", 8, name=abandoned)
    assert await store.drop_abandoned_rebuilds() == [abandoned]
    assert store.description == "Qdrant embedded folder, collection 'book'"
    await store.close()


async def test_a_second_process_on_the_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    first = EdgeQdrantClient(tmp_path / "edge")
    with pytest.raises(FolderInUse, match="BOOKCHAT_QDRANT_URL"):
        EdgeQdrantClient(tmp_path / "edge")
    await first.close()
    again = EdgeQdrantClient(tmp_path / "edge")  # the lock goes with the process that held it
    await again.close()


async def test_a_collection_whose_creation_crashed_is_removed(tmp_path: Path) -> None:
    client = EdgeQdrantClient(tmp_path / "edge")
    await client.close()
    (tmp_path / "edge" / "collections" / "half" / "shard").mkdir(parents=True)  # no collection.json yet
    reopened = EdgeQdrantClient(tmp_path / "edge")
    assert not (tmp_path / "edge" / "collections" / "half").exists()
    assert not await reopened.collection_exists("half")
    with pytest.raises(ValueError, match="invalid collection name"):
        await reopened.create_collection("../escape", vectors_config=VECTORS)
    await reopened.close()


async def test_dense_vectors_cross_to_the_engines_process_as_float32_and_read_back_the_same(tmp_path: Path) -> None:
    """`to_rows` packs dense vectors as float32 bytes (rounded as the engine rounds); written either way, a point
    reads back with the same vector."""
    rng = random.Random(3)
    sparse = sparse_vector(rng, 60, 4)
    points = [models.PointStruct(id=1, vector={DENSE_VECTOR: unit(rng), SPARSE_VECTOR: sparse}, payload={"n": 1})]
    rows = to_rows(points)
    packed = rows[0][1][DENSE_VECTOR]
    assert isinstance(packed, bytes)
    assert len(packed) == 4 * 8
    dense = points[0].vector[DENSE_VECTOR]  # type: ignore[index]
    assert array("f", packed).tolist() == [float(np.float32(x)) for x in dense]
    assert rows[0][1][SPARSE_VECTOR] == (sparse.indices, sparse.values)
    client = EdgeProcessClient(tmp_path / "edge")
    await client.create_collection("c", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    await client.upsert_rows("c", rows)  # packed
    threads = EdgeQdrantClient(tmp_path / "twin")
    await threads.create_collection("c", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    await threads.upsert("c", points)  # the models, converted by the engine itself
    got = await client.retrieve("c", [1], with_vectors=True)
    expected = await threads.retrieve("c", [1], with_vectors=True)
    assert got[0].vector == expected[0].vector
    assert got[0].vector[DENSE_VECTOR] == pytest.approx(dense, abs=1e-7)  # type: ignore[index]
    await client.close()
    await threads.close()


def test_rows_refuse_a_dense_vector_that_is_not_numbers_and_keep_multivectors_as_lists() -> None:
    not_numbers = models.PointStruct.model_construct(id=1, vector={DENSE_VECTOR: [0.5, "x"]}, payload=None)
    with pytest.raises(UnsupportedRequest, match="not a number"):
        to_rows([not_numbers])
    multi = models.PointStruct(id=2, vector={"colbert": [[0.1, 0.2], [0.3, 0.4]]})
    assert to_rows([multi])[0][1]["colbert"] == [[0.1, 0.2], [0.3, 0.4]]


async def test_calls_run_on_the_engines_threads_and_its_failures_name_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge = EdgeQdrantClient(tmp_path / "edge")
    await edge.create_collection("c", vectors_config=VECTORS)
    seen: list[str] = []
    original = edge_client._engine_call

    def spy(function: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(edge_client, "_engine_call", spy)
    await edge.count("c")
    assert seen
    assert all(name.startswith("qdrant-edge") for name in seen)
    with pytest.raises(VectorStoreError, match="embedded Qdrant engine failed"):
        await edge.upsert("c", [models.PointStruct(id=1, vector={DENSE_VECTOR: [1.0, 2.0]})])  # wrong size
    with pytest.raises(UnsupportedRequest):
        await edge.upsert("c", [models.PointStruct(id=1, vector=[1.0] * 8)])  # unnamed vector
    with pytest.raises(UnsupportedRequest):
        await edge.query_points("c", query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1])))
    await edge.close()
    with pytest.raises(RuntimeError, match="closed"):
        await edge.count("c")


async def test_every_translated_filter_selects_what_qdrant_client_selects(edge: EdgeEngine) -> None:
    rng = random.Random(3)
    local = await twin_collections(rng, edge)
    ids = [str(uuid.UUID(int=1000 + n)) for n in range(0, 300, 9)]
    conditions: list[Any] = [
        models.FieldCondition(key="generation", range=models.Range(gte=1, lt=2)),
        models.FieldCondition(key="document_id", match=models.MatchExcept(**{"except": [DOCUMENTS[0]]})),
        models.FieldCondition(key="text", match=models.MatchText(text="point")),
        models.IsNullCondition(is_null=models.PayloadField(key="text")),
        models.IsEmptyCondition(is_empty=models.PayloadField(key="generation")),
        models.HasIdCondition(has_id=ids),
        models.HasVectorCondition(has_vector=SPARSE_VECTOR),
        models.Filter(
            min_should=models.MinShould(
                conditions=[
                    models.FieldCondition(key="document_id", match=models.MatchValue(value=DOCUMENTS[1])),
                    models.FieldCondition(key="path_prefixes", match=models.MatchValue(value="guide")),
                ],
                min_count=2,
            )
        ),
    ]
    for condition in conditions:
        for query_filter in (models.Filter(must=[condition]), models.Filter(must_not=[condition])):
            got, _ = await edge.scroll("chunks", scroll_filter=query_filter, limit=500, with_payload=False)
            expected, _ = await local.scroll("chunks", scroll_filter=query_filter, limit=500, with_payload=False)
            assert {str(p.id) for p in got} == {str(p.id) for p in expected}, condition
    selected = await edge.query_points(
        "chunks",
        query=models.NearestQuery(nearest=unit(rng)),
        using=DENSE_VECTOR,
        with_payload=models.PayloadSelectorInclude(include=["text"]),
        with_vectors=[DENSE_VECTOR],
        search_params=models.SearchParams(exact=True),
        limit=3,
    )
    assert all(set(p.payload or {}) == {"text"} for p in selected.points)
    assert all(set(p.vector or {}) == {DENSE_VECTOR} for p in selected.points)  # type: ignore[arg-type]
    excluded, _ = await edge.scroll("chunks", limit=2, with_payload=models.PayloadSelectorExclude(exclude=["text"]))
    assert all("text" not in (p.payload or {}) for p in excluded)
    weighted = models.RrfQuery(rrf=models.Rrf(k=10, weights=[3.0, 1.0]))
    dense, sparse = unit(rng), sparse_vector(rng, 60, 3)
    request: dict[str, Any] = {
        "prefetch": [
            models.Prefetch(query=dense, using=DENSE_VECTOR, limit=20),
            models.Prefetch(query=sparse, using=SPARSE_VECTOR, limit=20, params=models.SearchParams(exact=True)),
        ],
        "query": weighted,
        "limit": 10,
    }
    assert_same_ranking(
        (await edge.query_points("chunks", **request)).points, (await local.query_points("chunks", **request)).points
    )
    with pytest.raises(UnsupportedRequest):
        await edge.scroll(
            "chunks",
            scroll_filter=models.Filter(
                must=[models.NestedCondition(nested=models.Nested(key="x", filter=models.Filter()))]
            ),
        )
    await local.close()
