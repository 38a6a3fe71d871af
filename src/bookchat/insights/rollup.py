"""The summary's rollup: closed UTC days folded once into insight_days (counts, latencies kept whole) and
insight_day_sections, so a summary over 100,000 questions reads rows per day, not per question.

A day is closed when it is over and no answer of it is still pending (a pending answer may yet change it). The
summary reads closed days from the rollup and the rest of its range (today, the edges of a range that does not
start or end at midnight) from the messages themselves, so every figure stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from bookchat.runtime.advisory_locks import Conn, lock_key
from bookchat.runtime.database import Pool

ROLLUP_LOCK = lock_key("bookchat:insights:rollup-days")

_CLOSED_UNTIL_SQL = """
    SELECT LEAST(((now() - interval '1 minute') AT TIME ZONE 'UTC')::date,
                 COALESCE((SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM messages WHERE status = 'pending'),
                          'infinity'::date))
"""
_FIRST_DAY_SQL = "SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM messages WHERE role = 'assistant'"
_ROLL_DAYS_SQL = """
    INSERT INTO insight_days (day, mode, questions, answered, judged, first_token_ms, full_answer_ms)
    SELECT (m.created_at AT TIME ZONE 'UTC')::date, COALESCE(m.mode, ''), count(*),
           count(*) FILTER (WHERE m.answered), count(m.answered),
           COALESCE(array_agg(m.first_token_ms) FILTER (WHERE m.status = 'ok' AND m.first_token_ms IS NOT NULL), '{}'),
           COALESCE(array_agg(m.latency_ms) FILTER (WHERE m.status = 'ok' AND m.latency_ms IS NOT NULL), '{}')
    FROM messages m WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2 GROUP BY 1, 2
    ON CONFLICT (day, mode) DO UPDATE SET questions = EXCLUDED.questions, answered = EXCLUDED.answered,
        judged = EXCLUDED.judged, first_token_ms = EXCLUDED.first_token_ms, full_answer_ms = EXCLUDED.full_answer_ms
"""
_ROLL_SECTIONS_SQL = """
    INSERT INTO insight_day_sections (day, title, url, heading_path, answers)
    SELECT (m.created_at AT TIME ZONE 'UTC')::date, c.title, c.url, COALESCE(c.heading_path, '[]'), count(DISTINCT m.id)
    FROM messages m CROSS JOIN LATERAL jsonb_to_recordset(m.citations) AS c (title text, heading_path jsonb, url text)
    WHERE m.role = 'assistant' AND m.created_at >= $1 AND m.created_at < $2 AND m.citations <> '[]'::jsonb
      AND c.title IS NOT NULL
    GROUP BY 1, 2, 3, 4
"""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class Split:
    """A range [start, end) as closed days [first_day, end_day) read from the rollup, and the rest read live:
    [start, live_until) and [live_from, end)."""

    first_day: date
    end_day: date
    live_until: datetime
    live_from: datetime

    @property
    def has_closed(self) -> bool:
        return self.first_day < self.end_day


def split(start: datetime, end: datetime, days_through: date | None) -> Split:
    first = start.date() if start == midnight(start.date()) else start.date() + timedelta(days=1)
    last = min(end.date(), days_through) if days_through is not None else first
    if first >= last:
        # Nothing closed in the range: all of it is read live.
        return Split(first, first, end, end)
    return Split(first, last, midnight(first), midnight(last))


async def roll_up(pool: Pool) -> date | None:
    """Fold the days closed since the last call; returns the first day not rolled up (None: no question yet).
    A busy lock (another request or replica rolling) leaves the days as they are: the summary then reads
    more of its range live, and is just as exact."""
    async with pool.acquire() as conn, conn.transaction():
        days_through: date | None = await conn.fetchval("SELECT days_through FROM insight_state WHERE id = 1")
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ROLLUP_LOCK):
            return days_through
        closed_until: date = await conn.fetchval(_CLOSED_UNTIL_SQL)
        start = days_through or await conn.fetchval(_FIRST_DAY_SQL)
        if start is None or start >= closed_until:
            return days_through
        await _roll(conn, start, closed_until)
        await conn.execute("UPDATE insight_state SET days_through = $1 WHERE id = 1", closed_until)
        return closed_until


async def _roll(conn: Conn, start: date, until: date) -> None:
    await conn.execute("DELETE FROM insight_days WHERE day >= $1 AND day < $2", start, until)
    await conn.execute("DELETE FROM insight_day_sections WHERE day >= $1 AND day < $2", start, until)
    await conn.execute(_ROLL_DAYS_SQL, midnight(start), midnight(until))
    await conn.execute(_ROLL_SECTIONS_SQL, midnight(start), midnight(until))
