"""SQL of the insights summary, the rated answers and the questions export; readers appear as pseudonyms only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from bookchat.runtime.database import Pool

# A reader is shown as the first 12 hex digits of SHA-256(salt || principal id): stable across the dashboard
# and the export (so "one reader asked this five times" is visible), never the id, and the salt never leaves
# the database (migration 008).
PSEUDONYM_SQL = "left(encode(sha256(convert_to(s.pseudonym_salt || c.owner_id, 'UTF8')), 'hex'), 12)"
# The question of an answer: the last question of its conversation written before it (the same statement
# writes both, one microsecond apart).
QUESTION_SQL = (
    "(SELECT u.content FROM messages u WHERE u.conversation_id = m.conversation_id AND u.role = 'user'"
    " AND u.created_at < m.created_at ORDER BY u.created_at DESC LIMIT 1)"
)
EXPORT_PREFETCH = 1000
TOP_SECTIONS = 10


@dataclass(frozen=True)
class RatedAnswer:
    feedback_id: UUID
    message_id: UUID
    rating: str
    comment: str | None
    rated_at: datetime
    question: str
    answer: str
    citations: list[dict[str, Any]]
    mode: str | None
    reader: str
    asked_at: datetime


def _json_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


class InsightsRepository:
    """Read-only queries over messages and feedback, for admins."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def buckets(self, since: datetime, until: datetime, interval: str) -> list[dict[str, Any]]:
        """Per interval (UTC): answers, answered / judged, thumbs up / down."""
        rows = await self.pool.fetch(
            "WITH a AS (SELECT date_trunc($3, m.created_at, 'UTC') AS bucket, count(*) AS questions,"
            "   count(*) FILTER (WHERE m.answered) AS answered, count(m.answered) AS judged"
            "  FROM messages m WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2 GROUP BY 1),"
            " f AS (SELECT date_trunc($3, m.created_at, 'UTC') AS bucket,"
            "   count(*) FILTER (WHERE f.rating = 'up') AS up, count(*) FILTER (WHERE f.rating = 'down') AS down"
            "  FROM feedback f JOIN messages m ON m.id = f.message_id"
            "  WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2 GROUP BY 1)"
            " SELECT a.*, COALESCE(f.up, 0) AS up, COALESCE(f.down, 0) AS down"
            " FROM a LEFT JOIN f USING (bucket) ORDER BY a.bucket",
            since,
            until,
            interval,
        )
        return [dict(row) for row in rows]

    async def by_mode(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per mode (and one row with mode NULL for all): counts and latency percentiles of completed answers."""
        rows = await self.pool.fetch(
            "SELECT m.mode, GROUPING(m.mode) = 1 AS is_total, count(*) AS questions,"
            " count(*) FILTER (WHERE m.answered) AS answered,"
            " count(m.answered) AS judged,"
            " percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY m.first_token_ms)"
            "   FILTER (WHERE m.status = 'ok') AS first_token,"
            " percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY m.latency_ms)"
            "   FILTER (WHERE m.status = 'ok') AS full_answer"
            " FROM messages m WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2"
            " GROUP BY GROUPING SETS ((m.mode), ())",
            since,
            until,
        )
        return [dict(row) for row in rows]

    async def feedback_totals(self, since: datetime, until: datetime) -> dict[str, int]:
        row = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE f.rating = 'up') AS up, count(*) FILTER (WHERE f.rating = 'down') AS down"
            " FROM feedback f JOIN messages m ON m.id = f.message_id"
            " WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2",
            since,
            until,
        )
        return {"up": row["up"], "down": row["down"]} if row else {"up": 0, "down": 0}

    async def top_sections(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """The sections answers cited most: each (title, heading path, URL) counted once per answer."""
        rows = await self.pool.fetch(
            "SELECT c.title, c.heading_path, c.url, count(DISTINCT m.id) AS citations"
            " FROM messages m CROSS JOIN LATERAL jsonb_to_recordset(m.citations)"
            "   AS c (title text, heading_path jsonb, url text)"
            " WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2"
            " AND m.citations <> '[]'::jsonb AND c.title IS NOT NULL"
            " GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 3 NULLS LAST LIMIT $3",
            since,
            until,
            TOP_SECTIONS,
        )
        return [
            {
                "title": row["title"],
                "heading_path": [str(part) for part in _json_list(row["heading_path"])],
                "url": row["url"],
                "citations": row["citations"],
            }
            for row in rows
        ]

    async def rated_answers(self, rating: str, *, limit: int, after: tuple[datetime, UUID] | None) -> list[RatedAnswer]:
        """Answers rated `rating`, most recently rated first; `after` = (rated_at, feedback id) of the last row."""
        rows = await self.pool.fetch(
            "SELECT f.id AS feedback_id, m.id AS message_id, f.rating, f.comment, f.updated_at AS rated_at,"  # noqa: S608
            f" COALESCE({QUESTION_SQL}, '') AS question, m.content AS answer, m.citations, m.mode,"
            f" {PSEUDONYM_SQL} AS reader, m.created_at AS asked_at"
            " FROM feedback f JOIN messages m ON m.id = f.message_id"
            " JOIN conversations c ON c.id = m.conversation_id CROSS JOIN insight_state s"
            " WHERE f.rating = $1 AND s.id = 1"
            " AND ($2::timestamptz IS NULL OR (f.updated_at, f.id) < ($2::timestamptz, $3::uuid))"
            " ORDER BY f.updated_at DESC, f.id DESC LIMIT $4",
            rating,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [RatedAnswer(**{**dict(row), "citations": _json_list(row["citations"])}) for row in rows]

    async def export_rows(self, since: datetime, until: datetime) -> AsyncIterator[dict[str, Any]]:
        """Every answer of [since, until), oldest first, read through a server-side cursor (constant memory)."""
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = conn.cursor(
                "SELECT m.created_at, m.id, "  # noqa: S608
                f" {PSEUDONYM_SQL} AS reader, COALESCE({QUESTION_SQL}, '') AS question, m.answered, m.mode,"
                " m.status, m.latency_ms, m.first_token_ms, f.rating, f.comment,"
                " ARRAY(SELECT DISTINCT e->>'url' FROM jsonb_array_elements(m.citations) e"
                "   WHERE e->>'url' IS NOT NULL) AS cited_urls"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id CROSS JOIN insight_state s"
                " LEFT JOIN LATERAL (SELECT rating, comment FROM feedback WHERE message_id = m.id"
                "   ORDER BY updated_at DESC LIMIT 1) f ON true"
                " WHERE s.id = 1 AND m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2"
                " ORDER BY m.created_at, m.id",
                since,
                until,
                prefetch=EXPORT_PREFETCH,
            )
            async for row in cursor:
                yield dict(row)

    async def ping(self) -> None:
        """One round trip, so an outage is a 503 before a streamed response has started."""
        await self.pool.fetchval("SELECT 1")
