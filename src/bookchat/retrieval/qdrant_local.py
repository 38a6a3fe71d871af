"""Qdrant's embedded (local) mode made fit for a server: its work runs off the event loop, sparse scoring in numpy.

qdrant-client's local mode is Qdrant reimplemented in Python. Three things in it hurt a web service:

- its `async` methods are synchronous underneath (numpy, SQLite), so every search or upsert would block the event
  loop. `LocalRunner` runs them on one background thread with its own loop; one thread also serialises them, as
  the local engine has no locks of its own.
- it scores sparse vectors one document at a time in pure Python (about a second per BM25 query on SciFact's 5,183
  abstracts). `install_fast_sparse_scoring` swaps that one function for an exact numpy equivalent over an inverted
  index built once per change of the collection, so a BM25 query costs milliseconds. Scores and order are the same
  (tests compare the two); it is applied only when qdrant-client still has the function it replaces.
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
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from qdrant_client.http import models

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
    """One BLAS thread for the process (see the module's docstring); False when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - a dependency; without it local search is only slower
        return False
    threadpool_limits(limits=1, user_api="blas")
    return True
