"""The summary's rollup of closed days: which days are closed, what holds one open, a busy lock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import FastAPI

from bookchat.insights.rollup import ROLLUP_LOCK, roll_up, split
from tests.insights.seed import SeedTurn, seed


def test_split_reads_whole_closed_days_from_the_rollup() -> None:
    day = datetime(2026, 11, 2, tzinfo=UTC)
    whole = split(day, day + timedelta(days=3), date(2026, 11, 30))
    assert (whole.first_day, whole.end_day) == (date(2026, 11, 2), date(2026, 11, 5))
    assert (whole.live_until, whole.live_from) == (day, day + timedelta(days=3))
    edges = split(day + timedelta(hours=5), day + timedelta(days=3, hours=1), date(2026, 11, 4))
    assert (edges.first_day, edges.end_day) == (date(2026, 11, 3), date(2026, 11, 4))
    assert edges.live_until == day + timedelta(days=1)
    assert edges.live_from == day + timedelta(days=2)
    assert not split(day, day + timedelta(hours=3), date(2026, 11, 30)).has_closed
    assert not split(day, day + timedelta(days=3), None).has_closed


async def test_a_pending_answer_keeps_its_day_open(insights_app: FastAPI, clean: None) -> None:
    pool = insights_app.state.resources.database.pool
    now = datetime.now(UTC)
    await seed(pool, [SeedTurn(question="old", at=now - timedelta(days=6))])
    await seed(pool, [SeedTurn(question="stuck", at=now - timedelta(days=3), status="pending", answered=None)])
    through = await roll_up(pool)
    assert through == (now - timedelta(days=3)).date()
    assert await pool.fetchval("SELECT sum(questions) FROM insight_days") == 1
    await pool.execute("UPDATE messages SET status = 'error' WHERE status = 'pending'")
    assert await roll_up(pool) == (now - timedelta(minutes=1)).date()
    assert await pool.fetchval("SELECT sum(questions) FROM insight_days") == 2


async def test_a_busy_rollup_leaves_the_days_as_they_are(insights_app: FastAPI, clean: None) -> None:
    pool = insights_app.state.resources.database.pool
    await seed(pool, [SeedTurn(question="old", at=datetime.now(UTC) - timedelta(days=6))])
    async with pool.acquire() as conn, conn.transaction():
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ROLLUP_LOCK)
        assert await roll_up(pool) is None
    assert await pool.fetchval("SELECT count(*) FROM insight_days") == 0
