"""Local-mode Qdrant helpers: exact numpy sparse scoring, the hybrid query on the engine's arrays, and calls kept off
the event loop."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.local import local_collection, sparse_distances

from bookchat.retrieval.qdrant_local import (
    LocalRunner,
    fast_calculate_distance_sparse,
    install_fast_sparse_scoring,
    local_hybrid_query,
)
from bookchat.retrieval.search import SearchFilters, _filter
from bookchat.retrieval.store import DENSE_VECTOR, SPARSE_VECTOR, VectorStore

ORIGINAL = sparse_distances.calculate_distance_sparse


def random_vector(rng: random.Random, vocabulary: int, size: int) -> models.SparseVector:
    indices = sorted(rng.sample(range(vocabulary), size))
    return models.SparseVector(indices=indices, values=[rng.uniform(0.1, 2.0) for _ in indices])


@pytest.mark.parametrize("empty_is_zero", [False, True])
def test_fast_scoring_equals_qdrants_own(empty_is_zero: bool) -> None:
    rng = random.Random(7)
    vectors = [random_vector(rng, 300, rng.randint(0, 40)) for _ in range(500)]
    for _ in range(20):
        query = random_vector(rng, 300, rng.randint(1, 8))
        expected = ORIGINAL(query, vectors, empty_is_zero=empty_is_zero)
        got = fast_calculate_distance_sparse(query, vectors, empty_is_zero=empty_is_zero)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isneginf(fast_calculate_distance_sparse(models.SparseVector(indices=[999], values=[1.0]), vectors)).all()


def test_a_replaced_or_added_vector_is_seen_at_once() -> None:
    vectors = [models.SparseVector(indices=[1, 2], values=[1.0, 1.0]) for _ in range(3)]
    query = models.SparseVector(indices=[2, 3], values=[1.0, 1.0])
    assert fast_calculate_distance_sparse(query, vectors).tolist() == [1.0, 1.0, 1.0]
    vectors[1] = models.SparseVector(indices=[3], values=[5.0])  # how the local engine applies an update
    vectors.append(models.SparseVector(indices=[4], values=[1.0]))
    assert fast_calculate_distance_sparse(query, vectors).tolist() == [1.0, 5.0, 1.0, -np.inf]
    assert fast_calculate_distance_sparse(query, vectors[:2]).tolist() == [1.0, 5.0]  # a slice of the same list


def test_the_fast_scoring_is_installed_for_local_stores() -> None:
    assert install_fast_sparse_scoring() is True
    assert local_collection.calculate_distance_sparse is fast_calculate_distance_sparse  # type: ignore[attr-defined]
    assert install_fast_sparse_scoring() is True  # idempotent


async def test_local_calls_run_on_the_stores_own_thread() -> None:
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "threads", kind="local-legacy")
    seen: list[str] = []

    async def where() -> str:
        seen.append(threading.current_thread().name)
        return "done"

    assert await store.run(where()) == "done"
    assert seen == ["qdrant-local"]
    assert await store.count() == 0
    await store.close()


async def test_a_runner_propagates_errors_and_closes_twice() -> None:
    runner = LocalRunner("test-runner")

    async def boom() -> None:
        raise ValueError("from the worker")

    with pytest.raises(ValueError, match="from the worker"):
        await runner.run(boom())
    runner.close()
    runner.close()


async def test_a_local_store_limits_blas_to_one_thread() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "blas", kind="local-legacy")
    blas = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert blas
    assert all(pool["num_threads"] == 1 for pool in blas)
    await store.close()


# ------------------------------------------------------------------------------------------- hybrid query

DOCUMENTS = [str(uuid.UUID(int=number)) for number in range(1, 6)]
FUSIONS = [
    models.FusionQuery(fusion=models.Fusion.DBSF),
    models.FusionQuery(fusion=models.Fusion.RRF),
    models.RrfQuery(rrf=models.Rrf(k=60)),
]


def unit(rng: random.Random, size: int = 8) -> list[float]:
    vector = np.array([rng.gauss(0, 1) for _ in range(size)])
    return list(vector / np.linalg.norm(vector))


async def random_collection(rng: random.Random) -> AsyncQdrantClient:
    """A local collection laid out like bookchat's (dense DOT + BM25 with IDF), with updates and deletions."""
    client = AsyncQdrantClient(location=":memory:")
    await client.create_collection(
        "chunks",
        vectors_config={DENSE_VECTOR: models.VectorParams(size=8, distance=models.Distance.DOT)},
        sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )

    def point(number: int) -> models.PointStruct:
        document = rng.choice(DOCUMENTS)
        path = rng.choice(["guide/intro.md", "guide/deploy.md", "api/chat.md"])
        prefixes = ["guide", path] if path.startswith("guide/") else [path]
        payload: dict[str, Any] = {"document_id": document, "path_prefixes": prefixes, "text": f"point {number}"}
        return models.PointStruct(
            id=str(uuid.UUID(int=1000 + number)),
            vector={DENSE_VECTOR: unit(rng), SPARSE_VECTOR: random_vector(rng, 60, rng.randint(0, 6))},
            payload=payload,
        )

    await client.upsert("chunks", [point(number) for number in range(300)])
    await client.upsert("chunks", [point(number) for number in rng.sample(range(300), 40)])  # replaced
    deleted = [str(uuid.UUID(int=1000 + number)) for number in rng.sample(range(300), 30)]
    await client.delete("chunks", points_selector=models.PointIdsList(points=deleted))  # type: ignore[arg-type]
    return client


@pytest.mark.parametrize("fusion", FUSIONS, ids=["dbsf", "rrf-default", "rrf-k60"])
async def test_the_hybrid_query_equals_qdrants_own(fusion: models.FusionQuery | models.RrfQuery) -> None:
    install_fast_sparse_scoring()
    rng = random.Random(11)
    client = await random_collection(rng)
    filters = [
        None,
        SearchFilters(document_ids=(DOCUMENTS[0], DOCUMENTS[3])),
        SearchFilters(path_prefix="guide"),
        SearchFilters(document_ids=(DOCUMENTS[1],), path_prefix="api/chat.md"),
    ]
    compared = 0
    for query_number in range(40):
        dense, sparse = unit(rng), random_vector(rng, 60, rng.randint(1, 4))
        query_filter = _filter(filters[query_number % len(filters)])
        fetch, limit = rng.choice([(5, 3), (20, 6), (100, 6), (100, 100)])
        expected = await client.query_points(
            "chunks",
            prefetch=[
                models.Prefetch(query=dense, using=DENSE_VECTOR, limit=fetch, filter=query_filter),
                models.Prefetch(query=sparse, using=SPARSE_VECTOR, limit=fetch, filter=query_filter),
            ],
            query=fusion,
            limit=limit,
            with_payload=True,
        )
        got = local_hybrid_query(
            client,
            "chunks",
            dense=dense,
            dense_name=DENSE_VECTOR,
            sparse=sparse,
            sparse_name=SPARSE_VECTOR,
            fetch=fetch,
            limit=limit,
            query_filter=query_filter,
            fusion=fusion,
        )
        assert got is not None
        # Same points, same order, the very same float scores and payloads.
        assert [(p.id, p.score, p.payload) for p in got] == [(p.id, p.score, p.payload) for p in expected.points]
        compared += len(got)
    assert compared > 400  # the queries found something to compare
    await client.close()


async def test_the_hybrid_query_leaves_a_server_client_to_the_public_api() -> None:
    server = AsyncQdrantClient(url="http://127.0.0.1:9", check_compatibility=False)  # never contacted
    assert (
        local_hybrid_query(
            server,
            "chunks",
            dense=[1.0],
            dense_name=DENSE_VECTOR,
            sparse=models.SparseVector(indices=[1], values=[1.0]),
            sparse_name=SPARSE_VECTOR,
            fetch=10,
            limit=5,
            query_filter=None,
            fusion=FUSIONS[0],
        )
        is None
    )
    await server.close()
