"""SQL of the insights summary, the rated answers and the questions export; readers appear as pseudonyms only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from bookchat.insights.rollup import Split
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
# The part of a range read from the messages themselves: before the closed days and after them ($1-$4).
LIVE = "((m.created_at >= $1 AND m.created_at < $2) OR (m.created_at >= $3 AND m.created_at < $4))"
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


def _params(since: datetime, until: datetime, days: Split) -> tuple[Any, ...]:
    return since, days.live_until, days.live_from, until, days.first_day, days.end_day


def _percentiles(arrays: list[list[int]]) -> list[float] | None:
    values = np.fromiter((value for array in arrays for value in array), dtype=np.float64)
    if not values.size:
        return None
    # numpy's default (linear) interpolation is PostgreSQL's percentile_cont.
    return [float(value) for value in np.percentile(values, [50, 95])]


def _mode_figures(mode: str | None, rows: list[Any], *, is_total: bool) -> dict[str, Any]:
    return {
        "mode": mode,
        "is_total": is_total,
        "questions": sum(row["questions"] for row in rows),
        "answered": sum(row["answered"] for row in rows),
        "judged": sum(row["judged"] for row in rows),
        "first_token": _percentiles([row["first_token_ms"] for row in rows]),
        "full_answer": _percentiles([row["full_answer_ms"] for row in rows]),
    }


def _json_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


class InsightsRepository:
    """Read-only queries over messages and feedback, for admins."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def buckets(self, since: datetime, until: datetime, interval: str, days: Split) -> list[dict[str, Any]]:
        """Per interval (UTC): answers, answered / judged; closed days from the rollup, the rest live."""
        rows = await self.pool.fetch(
            "SELECT b AS bucket, sum(q)::bigint AS questions, sum(a)::bigint AS answered, sum(j)::bigint AS judged"  # noqa: S608
            " FROM (SELECT date_trunc($7, m.created_at, 'UTC') AS b, count(*) AS q,"
            "   count(*) FILTER (WHERE m.answered) AS a, count(m.answered) AS j"
            f"  FROM messages m WHERE m.role = 'assistant' AND {LIVE} GROUP BY 1"
            " UNION ALL SELECT date_trunc($7, d.day::timestamp AT TIME ZONE 'UTC', 'UTC'), sum(d.questions),"
            "   sum(d.answered), sum(d.judged) FROM insight_days d WHERE d.day >= $5 AND d.day < $6 GROUP BY 1) x"
            " GROUP BY b ORDER BY b",
            *_params(since, until, days),
            interval,
        )
        return [dict(row) for row in rows]

    async def feedback_buckets(self, since: datetime, until: datetime, interval: str) -> list[dict[str, Any]]:
        """Thumbs up / down per interval of the rated answer's time (read live: a rating may change any day)."""
        rows = await self.pool.fetch(
            "SELECT date_trunc($3, f.asked_at, 'UTC') AS bucket,"
            " count(*) FILTER (WHERE f.rating = 'up') AS up, count(*) FILTER (WHERE f.rating = 'down') AS down"
            " FROM feedback f WHERE f.asked_at >= $1 AND f.asked_at < $2 GROUP BY 1",
            since,
            until,
            interval,
        )
        return [dict(row) for row in rows]

    async def by_mode(self, since: datetime, until: datetime, days: Split) -> list[dict[str, Any]]:
        """Per mode (and one row, `is_total`, for all): counts and latency percentiles of completed answers.

        The latencies come back as arrays, a few rows per day, and their percentiles are taken here: sorting
        100,000 values in numpy is a few milliseconds, where PostgreSQL's percentile_cont over unnested arrays
        took most of the summary's time."""
        rows = await self.pool.fetch(
            "SELECT NULLIF(d.mode, '') AS mode, d.questions, d.answered, d.judged,"  # noqa: S608
            " d.first_token_ms, d.full_answer_ms"
            " FROM insight_days d WHERE d.day >= $5 AND d.day < $6"
            " UNION ALL SELECT m.mode, count(*), count(*) FILTER (WHERE m.answered), count(m.answered),"
            "  COALESCE(array_agg(m.first_token_ms) FILTER (WHERE m.status = 'ok' AND m.first_token_ms IS NOT NULL),"
            "   '{}'),"
            "  COALESCE(array_agg(m.latency_ms) FILTER (WHERE m.status = 'ok' AND m.latency_ms IS NOT NULL), '{}')"
            f" FROM messages m WHERE m.role = 'assistant' AND {LIVE} GROUP BY m.mode",
            *_params(since, until, days),
        )
        groups: dict[str | None, list[Any]] = {}
        for row in rows:
            groups.setdefault(row["mode"], []).append(row)
        figures = [_mode_figures(mode, group, is_total=False) for mode, group in groups.items()]
        return [_mode_figures(None, rows, is_total=True), *figures]

    async def top_sections(self, since: datetime, until: datetime, days: Split) -> list[dict[str, Any]]:
        """The sections answers cited most: each (title, heading path, URL) counted once per answer."""
        rows = await self.pool.fetch(
            "SELECT title, heading_path, url, sum(n)::bigint AS citations FROM ("  # noqa: S608
            "  SELECT c.title, COALESCE(c.heading_path, '[]') AS heading_path, c.url, count(DISTINCT m.id) AS n"
            "  FROM messages m CROSS JOIN LATERAL jsonb_to_recordset(m.citations)"
            "   AS c (title text, heading_path jsonb, url text)"
            f"  WHERE m.role = 'assistant' AND {LIVE} AND m.citations <> '[]'::jsonb AND c.title IS NOT NULL"
            "  GROUP BY 1, 2, 3"
            "  UNION ALL SELECT s.title, s.heading_path, s.url, s.answers FROM insight_day_sections s"
            "   WHERE s.day >= $5 AND s.day < $6"
            " ) x GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 3 NULLS LAST LIMIT $7",
            *_params(since, until, days),
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
