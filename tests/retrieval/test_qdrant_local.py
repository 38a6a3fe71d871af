"""Local-mode Qdrant helpers: exact numpy sparse scoring, and calls kept off the event loop."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.local import local_collection, sparse_distances

from bookchat.retrieval.qdrant_local import (
    LocalRunner,
    fast_calculate_distance_sparse,
    install_fast_sparse_scoring,
)
from bookchat.retrieval.store import VectorStore

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
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "threads", is_local=True)
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
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "blas", is_local=True)
    blas = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert blas
    assert all(pool["num_threads"] == 1 for pool in blas)
    await store.close()
