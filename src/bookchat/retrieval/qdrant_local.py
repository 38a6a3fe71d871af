"""Qdrant's embedded (local) mode made fit for a server: its work runs off the event loop, sparse scoring in numpy.

qdrant-client's local mode is Qdrant reimplemented in Python. Four things in it hurt a web service:

- its `async` methods are synchronous underneath (numpy, SQLite), so every search or upsert would block the event
  loop. `LocalRunner` runs them on one background thread with its own loop; one thread also serialises them, as
  the local engine has no locks of its own.
- it scores sparse vectors one document at a time in pure Python (about a second per BM25 query on SciFact's 5,183
  abstracts). `install_fast_sparse_scoring` swaps that one function for an exact numpy equivalent over an inverted
  index built once per change of the collection, so a BM25 query costs milliseconds. Scores and order are the same
  (tests compare the two); it is applied only when qdrant-client still has the function it replaces.
- a hybrid query (two prefetches fused) copies the query vectors float by float several times and builds a
  scored-point object for every candidate of both lists, all in Python, holding the GIL that every chat stream of
  the process shares. `local_hybrid_query` computes the same result from the engine's own arrays and functions:
  the same scores, order and fusion arithmetic (tests compare it with `query_points`), objects only for the hits.
- its dense search is a numpy product of one query with every stored vector. OpenBLAS runs it on every core and
  then keeps those threads spinning for a while, which slows the next query embedding on a small machine; one BLAS
  thread does such a product as fast (`limit_blas_threads`; measured on 2 cores: search p50 40 ms -> 20 ms).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt
from qdrant_client.http import models

# Imported with this module, not when the first store opens: that happens during the app's start-up while
# another thread loads the embedding model, and a clean CI run once saw threadpoolctl's own import fail there.
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]

if TYPE_CHECKING:
    from qdrant_client.local.local_collection import LocalCollection

log = logging.getLogger(__name__)

T = TypeVar("T")

# Inverted indexes kept: one per collection in use, plus stale ones until evicted (they hold their vectors).
_CACHE_SIZE = 4


class LocalRunner:
    """A thread with its own event loop on which every call into one local Qdrant client runs, one at a time."""

    def __init__(self, name: str = "qdrant-local") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()


class _InvertedIndex:
    """Postings of every term of a list of sparse vectors: for a term, the documents and their weights."""

    def __init__(self, vectors: Sequence[models.SparseVector]) -> None:
        self.size = len(vectors)
        lengths = np.fromiter((len(vector.indices) for vector in vectors), dtype=np.int64, count=self.size)
        total = int(lengths.sum())
        terms = np.fromiter(
            itertools.chain.from_iterable(vector.indices for vector in vectors), dtype=np.int64, count=total
        )
        weights = np.fromiter(
            itertools.chain.from_iterable(vector.values for vector in vectors), dtype=np.float64, count=total
        )
        documents = np.repeat(np.arange(self.size, dtype=np.int64), lengths)
        order = np.argsort(terms, kind="stable")
        self.terms, starts = np.unique(terms[order], return_index=True)
        self.starts = np.append(starts, total)
        self.documents = documents[order]
        self.weights = weights[order]

    def scores(self, query: models.SparseVector, empty_is_zero: bool) -> npt.NDArray[np.float32]:
        scores = np.zeros(self.size, dtype=np.float64)
        matched = np.zeros(self.size, dtype=bool)
        for term, value in zip(query.indices, query.values, strict=True):
            position = int(np.searchsorted(self.terms, term))
            if position == len(self.terms) or self.terms[position] != term:
                continue
            span = slice(self.starts[position], self.starts[position + 1])
            scores[self.documents[span]] += value * self.weights[span]
            matched[self.documents[span]] = True
        if not empty_is_zero:
            # No term in common is "no score" for a plain search: such points are left out, not ranked last.
            scores[~matched] = -np.inf
        return scores.astype(np.float32)


class _IndexCache:
    """Inverted indexes keyed by the identities of the vectors they were built from.

    The local engine hands over a fresh slice of its vector list on every search, but the same vector objects;
    it replaces a vector object on every update and appends new points. The tuple of element identities is
    therefore an exact, cheap (it is built and hashed in C) key: any change to the collection is a new key. An entry
    keeps its vectors alive, so their identities cannot be reused by other objects while it is cached.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[int, ...], tuple[list[models.SparseVector], _InvertedIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def index_for(self, vectors: Sequence[models.SparseVector]) -> _InvertedIndex:
        key = tuple(map(id, vectors))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[1]
        index = _InvertedIndex(vectors)
        with self._lock:
            self._entries[key] = (list(vectors), index)
            while len(self._entries) > _CACHE_SIZE:
                self._entries.popitem(last=False)
        return index


_cache = _IndexCache()


def fast_calculate_distance_sparse(
    query: models.SparseVector, vectors: list[models.SparseVector], empty_is_zero: bool = False
) -> npt.NDArray[np.float32]:
    """Drop-in for `qdrant_client.local.sparse_distances.calculate_distance_sparse`: the dot product of `query`
    with each vector; -inf where they share no index, or 0 with `empty_is_zero`."""
    return _cache.index_for(vectors).scores(query, empty_is_zero)


_installed = False


def install_fast_sparse_scoring() -> bool:
    """Make local-mode sparse search use `fast_calculate_distance_sparse`; True when it is (now or already) in use."""
    global _installed
    if _installed:
        return True
    try:
        from qdrant_client.local import local_collection, sparse_distances
    except ImportError:  # pragma: no cover - qdrant-client without local mode
        return False
    original = getattr(sparse_distances, "calculate_distance_sparse", None)
    if original is None or getattr(local_collection, "calculate_distance_sparse", None) is not original:
        log.warning("qdrant-client's local sparse scoring has changed; BM25 in local mode stays at its own speed")
        return False
    local_collection.calculate_distance_sparse = fast_calculate_distance_sparse  # type: ignore[attr-defined]
    _installed = True
    return True


def limit_blas_threads() -> bool:
    """One BLAS thread for the process (see the module's docstring)."""
    threadpool_limits(limits=1, user_api="blas")
    return True


def _local_collection(client: object, name: str) -> LocalCollection | None:
    """The engine's collection object behind a local-mode client, or None for a server client."""
    from qdrant_client.local.async_qdrant_local import AsyncQdrantLocal

    local = getattr(client, "_client", None)
    if not isinstance(local, AsyncQdrantLocal):
        return None
    return local._get_collection(name)  # raises like query_points does: closed client, unknown collection


def _candidates(
    collection: LocalCollection, scores: npt.NDArray[Any], name: str, query_filter: models.Filter | None, limit: int
) -> list[tuple[int, float]]:
    """What `LocalCollection.search` keeps of `scores`: best first (same sort), filtered, deleted points and sparse
    non-matches (-inf) left out, at most `limit`; as (internal index, score as a Python float)."""
    # The engine's mask holds 0/1 integers, not booleans: as an index they would pick positions 0 and 1.
    mask = collection._payload_and_non_deleted_mask(query_filter, vector_name=name).astype(bool)
    order = np.argsort(scores)[::-1]
    order = order[mask[order]]
    order = order[scores[order] != -np.inf][:limit]
    return [(int(index), float(scores[index])) for index in order]


def _dbsf(lists: list[list[tuple[int, float]]]) -> dict[int, float]:
    """`qdrant_client.hybrid.fusion.distribution_based_score_fusion`, with its arithmetic in its order."""
    fused: dict[int, float] = {}
    for hits in lists:
        if not hits:
            continue
        scores = [score for _, score in hits]
        if len(scores) == 1:
            normalised = [0.5]
        else:
            mean = sum(scores) / len(scores)
            variance = sum([(score - mean) ** 2 for score in scores]) / (len(scores) - 1)
            if variance == 0:
                normalised = [0.5] * len(scores)
            else:
                std_dev = variance**0.5
                low, high = mean - 3 * std_dev, mean + 3 * std_dev
                normalised = [(score - low) / (high - low) for score in scores]
        for (index, _), score in zip(hits, normalised, strict=True):
            fused[index] = fused[index] + score if index in fused else score
    return fused


def _rrf(lists: list[list[tuple[int, float]]], k: int) -> dict[int, float]:
    """`qdrant_client.hybrid.fusion.reciprocal_rank_fusion` without weights, with its arithmetic in its order."""
    fused: dict[int, float] = {}
    for hits in lists:
        for rank, (index, _) in enumerate(hits):
            score = 1 / ((rank + 1.0) / 1.0 + k - 1.0)
            fused[index] = fused[index] + score if index in fused else score
    return fused


_hybrid_query_works = True


def local_hybrid_query(
    client: object,
    collection_name: str,
    *,
    dense: Sequence[float],
    dense_name: str,
    sparse: models.SparseVector,
    sparse_name: str,
    fetch: int,
    limit: int,
    query_filter: models.Filter | None,
    fusion: models.FusionQuery | models.RrfQuery,
) -> list[models.ScoredPoint] | None:
    """`client.query_points` with two prefetches (`dense` and `sparse`, `fetch` each, both under `query_filter`)
    fused by `fusion`, `limit` hits with payloads — computed on the local engine's arrays. None when `client` is not
    local mode, or when this qdrant-client's engine no longer has the internals used here (warned once; the caller
    then takes `query_points`). Call it where the engine's own calls run (the `LocalRunner` thread)."""
    global _hybrid_query_works
    if not _hybrid_query_works:
        return None
    if isinstance(fusion, models.RrfQuery) and fusion.rrf.weights is not None:
        return None
    try:
        collection = _local_collection(client, collection_name)
        if collection is None:
            return None
        from qdrant_client.local import local_collection as engine
        from qdrant_client.local.distances import calculate_distance
        from qdrant_client.local.sparse import sort_sparse_vector, validate_sparse_vector

        size = len(collection.payload)
        dense_scores = calculate_distance(
            np.array(dense), collection.vectors[dense_name][:size], collection.get_vector_params(dense_name).distance
        )
        validate_sparse_vector(sparse)
        sparse_config = (collection.config.sparse_vectors or {})[sparse_name]
        if sparse_config.modifier == models.Modifier.IDF:
            sparse = collection._rescore_idf(sparse, sparse_name, None)
        # The engine module's attribute, so the same scoring function runs as in `search` (ours when installed).
        score_sparse = engine.calculate_distance_sparse  # type: ignore[attr-defined]
        sparse_scores = score_sparse(sort_sparse_vector(sparse), collection.sparse_vectors[sparse_name][:size])
        lists = [
            _candidates(collection, dense_scores, dense_name, query_filter, fetch),
            _candidates(collection, sparse_scores, sparse_name, query_filter, fetch),
        ]
        if isinstance(fusion, models.RrfQuery):
            fused = _rrf(lists, fusion.rrf.k if fusion.rrf.k is not None else 2)
        elif fusion.fusion == models.Fusion.DBSF:
            fused = _dbsf(lists)
        else:
            fused = _rrf(lists, 2)  # Fusion.RRF: the engine's default constant
        best = sorted(fused.items(), key=lambda item: item[1], reverse=True)[:limit]
        return [
            models.ScoredPoint.model_construct(
                id=collection.ids_inv[index], version=0, score=score, payload=collection._get_payload(index, True)
            )
            for index, score in best
        ]
    except (AttributeError, TypeError, ImportError):
        # Private parts of qdrant-client (the range in pyproject spans versions); its own path is always right.
        _hybrid_query_works = False
        log.warning("qdrant-client's local engine has changed; hybrid queries take its own, slower path", exc_info=True)
        return None
