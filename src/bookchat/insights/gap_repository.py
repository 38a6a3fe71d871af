"""SQL of content gaps: the unanswered questions not yet assigned, the gaps' vector sums, the ranked gaps table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import numpy as np

from bookchat.runtime.advisory_locks import Conn, lock_key
from bookchat.runtime.database import Pool

ASSIGN_LOCK = lock_key("bookchat:insights:assign-gaps")
# An answer row is written by one statement; one that started before the watermark moved but committed after
# it has had a minute to land. Answers still pending hold the watermark back until they finish.
WATERMARK_MARGIN = "1 minute"
# Recent phrasings read per gap to pick up to `MAX_EXAMPLES` distinct ones.
EXAMPLE_CANDIDATES = 40
MAX_EXAMPLES = 5
MAX_QUESTION_CHARS = 8000


@dataclass(frozen=True)
class Unassigned:
    message_id: UUID
    question: str
    asked_at: datetime


@dataclass
class GapVectors:
    """Every gap's id and running vector sum, as one matrix (row i is gap `ids[i]`)."""

    ids: list[int]
    sums: np.ndarray  # float32, shape (gaps, dim)
    members: list[int]


@dataclass(frozen=True)
class GapRow:
    id: int
    asked: int
    last_asked: datetime
    examples: list[str]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


class GapRepository:
    """Reads and writes of `insight_gaps`, `insight_questions` and `insight_state` (migration 008)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @staticmethod
    async def try_lock(conn: Conn) -> bool:
        """The assignment lock for the open transaction; False when another request or replica holds it."""
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ASSIGN_LOCK))

    @staticmethod
    async def prepare_model(conn: Conn, model_id: str) -> None:
        """Gaps are vectors of one embedding model: when the model changed, they are rebuilt from scratch."""
        current = await conn.fetchval("SELECT embedding_model FROM insight_state WHERE id = 1 FOR UPDATE")
        if current != model_id:
            await conn.execute("DELETE FROM insight_gaps")
            await conn.execute(
                "UPDATE insight_state SET embedding_model = $1, watermark = '-infinity' WHERE id = 1", model_id
            )

    @staticmethod
    async def unassigned(conn: Conn, limit: int) -> list[Unassigned]:
        """The oldest unanswered questions since the watermark that no gap holds yet, with their question text."""
        rows = await conn.fetch(
            "SELECT m.id, m.created_at, q.content FROM messages m"
            " CROSS JOIN insight_state s"
            " CROSS JOIN LATERAL (SELECT u.content FROM messages u WHERE u.conversation_id = m.conversation_id"
            "   AND u.role = 'user' AND u.created_at < m.created_at ORDER BY u.created_at DESC LIMIT 1) q"
            " WHERE s.id = 1 AND m.role = 'assistant' AND m.answered = false AND m.created_at >= s.watermark"
            " AND NOT EXISTS (SELECT 1 FROM insight_questions i WHERE i.message_id = m.id)"
            " ORDER BY m.created_at, m.id LIMIT $1",
            limit,
        )
        return [Unassigned(row["id"], row["content"][:MAX_QUESTION_CHARS], row["created_at"]) for row in rows]

    @staticmethod
    async def gap_vectors(conn: Conn, dim: int) -> GapVectors:
        rows = await conn.fetch("SELECT id, vector_sum, members FROM insight_gaps ORDER BY id")
        sums = np.frombuffer(b"".join(row["vector_sum"] for row in rows), dtype="<f4").reshape(len(rows), dim)
        return GapVectors([row["id"] for row in rows], sums.astype(np.float32), [row["members"] for row in rows])

    @staticmethod
    async def create_gaps(conn: Conn, model_id: str, sums: Sequence[np.ndarray], members: Sequence[int]) -> list[int]:
        rows = await conn.fetch(
            "INSERT INTO insight_gaps (embedding_model, vector_sum, members)"
            " SELECT $1, v, n FROM unnest($2::bytea[], $3::int[]) WITH ORDINALITY AS t (v, n, o) ORDER BY o"
            " RETURNING id",
            model_id,
            [to_bytes(vector) for vector in sums],
            list(members),
        )
        return [row["id"] for row in rows]

    @staticmethod
    async def update_gaps(conn: Conn, ids: Sequence[int], sums: Sequence[np.ndarray], members: Sequence[int]) -> None:
        await conn.execute(
            "UPDATE insight_gaps g SET vector_sum = t.v, members = t.n"
            " FROM unnest($1::bigint[], $2::bytea[], $3::int[]) AS t (id, v, n) WHERE g.id = t.id",
            list(ids),
            [to_bytes(vector) for vector in sums],
            list(members),
        )

    @staticmethod
    async def insert_questions(
        conn: Conn, questions: Sequence[Unassigned], gap_ids: Sequence[int], similarities: Sequence[float]
    ) -> None:
        await conn.execute(
            "INSERT INTO insight_questions (message_id, gap_id, question, asked_at, similarity)"
            " SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::real[])"
            " ON CONFLICT (message_id) DO NOTHING",
            [question.message_id for question in questions],
            list(gap_ids),
            [question.question for question in questions],
            [question.asked_at for question in questions],
            list(similarities),
        )

    @staticmethod
    async def advance_watermark(conn: Conn, *, drained: bool, last: datetime | None) -> None:
        """Move the watermark past what is assigned: to a minute ago when the backlog is drained (else to the
        last question assigned), but never past an answer still pending, which may yet end unanswered."""
        await conn.execute(
            "UPDATE insight_state SET watermark = GREATEST(watermark, LEAST("  # noqa: S608
            f"  CASE WHEN $1 THEN now() - interval '{WATERMARK_MARGIN}' ELSE $2::timestamptz END,"
            "   COALESCE((SELECT min(created_at) FROM messages WHERE status = 'pending'), 'infinity')))"
            " WHERE id = 1",
            drained,
            last,
        )

    async def ranked(
        self, *, since: datetime, until: datetime, limit: int, after: tuple[int, int] | None
    ) -> list[GapRow]:
        """Gaps by how often they were asked in [since, until), then newest gap first; `after` = (asked, id)
        of the previous page's last row."""
        rows = await self.pool.fetch(
            "WITH g AS (SELECT gap_id, count(*) AS asked, max(asked_at) AS last_asked FROM insight_questions"
            "  WHERE asked_at >= $1 AND asked_at < $2 GROUP BY gap_id)"
            " SELECT g.gap_id, g.asked, g.last_asked, e.phrasings FROM g CROSS JOIN LATERAL ("
            "  SELECT array_agg(q.question ORDER BY q.asked_at DESC) AS phrasings FROM ("
            "   SELECT question, asked_at FROM insight_questions i WHERE i.gap_id = g.gap_id"
            "   AND i.asked_at >= $1 AND i.asked_at < $2 ORDER BY i.asked_at DESC LIMIT $6) q) e"
            " WHERE $3::bigint IS NULL OR (g.asked, g.gap_id) < ($3::bigint, $4::bigint)"
            " ORDER BY g.asked DESC, g.gap_id DESC LIMIT $5",
            since,
            until,
            after[0] if after else None,
            after[1] if after else None,
            limit,
            EXAMPLE_CANDIDATES,
        )
        return [GapRow(row["gap_id"], row["asked"], row["last_asked"], distinct(row["phrasings"])) for row in rows]

    async def delete_empty_gaps(self, conn: Conn) -> int:
        """Gaps none of whose questions is left (after a purge or deleted conversations)."""
        result: str = await conn.execute(
            "DELETE FROM insight_gaps g WHERE NOT EXISTS (SELECT 1 FROM insight_questions i WHERE i.gap_id = g.id)"
        )
        return int(result.rsplit(" ", 1)[-1])


def distinct(phrasings: Sequence[str] | None) -> list[str]:
    """Up to `MAX_EXAMPLES` phrasings, newest first, each once (case and spacing aside)."""
    seen: set[str] = set()
    examples = []
    for phrasing in phrasings or ():
        key = " ".join(phrasing.lower().split())
        if key not in seen:
            seen.add(key)
            examples.append(phrasing)
        if len(examples) == MAX_EXAMPLES:
            break
    return examples
