"""Content gaps: unanswered questions embedded lazily and assigned greedily to the nearest gap centroid.

Greedy, incremental assignment (the "leader" clustering of streams): each new question joins the gap whose
centroid is most similar if that similarity reaches `INSIGHTS_GAP_THRESHOLD`, else it starts a gap of its own;
the gap's vector sum grows by the question's vector. Each question is embedded once, when an insights request
first sees it, so answering a reader never waits for it and the gaps table itself is one SQL query.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from bookchat.insights.gap_repository import GapRepository, GapVectors, Unassigned
from bookchat.retrieval.embeddings import Embedder, EmbeddingError
from bookchat.runtime.advisory_locks import Conn
from bookchat.runtime.database import Pool

log = logging.getLogger(__name__)

# Readers repeat phrasings ("hello", a popular off-topic question): their vectors are kept, keyed by a hash of
# the text (no question text stays in memory), and forgotten by each retention sweep.
VECTOR_CACHE_SIZE = 20_000


@dataclass(frozen=True)
class AssignResult:
    assigned: int
    new_gaps: int
    complete: bool  # False: questions are left for the next request (batch full, embedder failing, lock busy)


class VectorCache:
    """A bounded LRU of question vectors keyed by SHA-256 of the text."""

    def __init__(self, size: int = VECTOR_CACHE_SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, text: str) -> np.ndarray | None:
        key = self.key(text)
        vector = self._vectors.get(key)
        if vector is not None:
            self._vectors.move_to_end(key)
        return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        self._vectors[self.key(text)] = vector
        self._vectors.move_to_end(self.key(text))
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)

    def clear(self) -> None:
        self._vectors.clear()

    def __len__(self) -> int:
        return len(self._vectors)


_cache = VectorCache()


def vector_cache() -> VectorCache:
    """The process's cache (shared by the app's requests and its retention sweep)."""
    return _cache


async def embed_questions(embedder: Embedder, texts: list[str], cache: VectorCache) -> np.ndarray:
    """Unit vectors of `texts`; each distinct text not cached is embedded once, in one batch."""
    missing = list(dict.fromkeys(text for text in texts if cache.get(text) is None))
    if missing:
        vectors = await embedder.embed_documents(missing)
        for text, vector in zip(missing, vectors, strict=True):
            cache.put(text, np.asarray(vector, dtype=np.float32))
    found = [cache.get(text) for text in texts]
    return np.stack([vector if vector is not None else np.zeros(embedder.dim, np.float32) for vector in found])


@dataclass
class Assignment:
    """The outcome of assigning one batch: which gap each question went to, and the gaps' new sums."""

    gap_index: list[int]  # per question: the row of the gap in `sums`
    similarity: list[float]
    sums: np.ndarray
    members: list[int]
    existing: int  # rows below this are gaps that existed before the batch


def assign(vectors: np.ndarray, gaps: GapVectors, threshold: float) -> Assignment:
    """Greedy assignment in order: each vector joins the most similar centroid at or above `threshold` (the
    centroids move as members join), or starts a new gap."""
    sums = gaps.sums.copy()
    existing = len(gaps.ids)
    counts = list(gaps.members)
    centroids = _unit(sums) if existing else np.zeros((0, vectors.shape[1]), np.float32)
    chosen: list[int] = []
    similarities: list[float] = []
    for vector in vectors:
        best, score = -1, -1.0
        if len(centroids):
            scores = centroids @ vector
            best = int(np.argmax(scores))
            score = float(scores[best])
        if best < 0 or score < threshold:
            sums = np.vstack([sums, vector[None, :]]) if len(sums) else vector[None, :].copy()
            centroids = np.vstack([centroids, vector[None, :]]) if len(centroids) else vector[None, :].copy()
            counts.append(1)
            best, score = len(counts) - 1, 1.0
        else:
            sums[best] += vector
            counts[best] += 1
            centroids[best] = _unit(sums[best : best + 1])[0]
        chosen.append(best)
        similarities.append(score)
    return Assignment(chosen, similarities, sums, counts, existing)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: np.ndarray = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


class GapIndexer:
    """Assigns the unanswered questions no gap holds yet, one batch per call, under an advisory lock."""

    def __init__(self, pool: Pool, embedder: Embedder, *, threshold: float, batch: int) -> None:
        self.repository = GapRepository(pool)
        self.pool = pool
        self.embedder = embedder
        self.threshold = threshold
        self.batch = batch
        self.cache = vector_cache()

    async def assign_pending(self) -> AssignResult:
        """One batch in one transaction: a failure half-way (database, embedder) leaves nothing half-assigned."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await self.repository.try_lock(conn):
                # Another request or replica is assigning: serve what is assigned already.
                return AssignResult(0, 0, complete=False)
            await self.repository.prepare_model(conn, self.embedder.model_id)
            questions = await self.repository.unassigned(conn, self.batch)
            if not questions:
                await self.repository.advance_watermark(conn, drained=True, last=None)
                return AssignResult(0, 0, complete=True)
            try:
                vectors = await embed_questions(
                    self.embedder, [question.question for question in questions], self.cache
                )
            except EmbeddingError as exc:
                log.warning("unanswered questions not grouped: the embedder failed", extra={"cause": str(exc)})
                return AssignResult(0, 0, complete=False)
            gaps = await self.repository.gap_vectors(conn, self.embedder.dim)
            result = assign(vectors, gaps, self.threshold)
            await self._store(conn, questions, gaps, result)
            drained = len(questions) < self.batch
            await self.repository.advance_watermark(conn, drained=drained, last=questions[-1].asked_at)
            return AssignResult(len(questions), len(result.members) - result.existing, complete=drained)

    async def _store(self, conn: Conn, questions: list[Unassigned], gaps: GapVectors, result: Assignment) -> None:
        touched = sorted({index for index in result.gap_index if index < result.existing})
        if touched:
            await self.repository.update_gaps(
                conn,
                [gaps.ids[index] for index in touched],
                [result.sums[index] for index in touched],
                [result.members[index] for index in touched],
            )
        created = list(range(result.existing, len(result.members)))
        new_ids = await self.repository.create_gaps(
            conn,
            self.embedder.model_id,
            [result.sums[index] for index in created],
            [result.members[index] for index in created],
        )
        ids = gaps.ids + new_ids
        await self.repository.insert_questions(
            conn,
            questions,
            [ids[index] for index in result.gap_index],
            result.similarity,
        )
