"""Retention: conversations older than `RETENTION_DAYS` are deleted everywhere, by `bookchat purge` and a daily
in-process sweep (the style of the sweep of interrupted answers, chat/upkeep.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bookchat.config import Settings
from bookchat.insights.gap_repository import GapRepository
from bookchat.insights.gaps import vector_cache
from bookchat.runtime.database import Pool, is_database_outage

log = logging.getLogger(__name__)

# Rows per DELETE: each statement holds its locks briefly, so a large first purge never blocks chat for long.
PURGE_BATCH = 1000


@dataclass(frozen=True)
class PurgeResult:
    messages: int
    conversations: int
    gaps: int


async def purge(pool: Pool, days: int) -> PurgeResult:
    """Delete messages older than `days` days (their feedback and gap entries go with them, ON DELETE CASCADE),
    then conversations left with no message and no activity since, then gaps left with no question, and the
    process's cache of question vectors. Each batch commits: an outage half-way leaves a consistent state
    that the next run finishes."""
    messages = conversations = 0
    while True:
        deleted = _count(
            await pool.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                " WHERE created_at < now() - make_interval(days => $1) LIMIT $2)",
                days,
                PURGE_BATCH,
            )
        )
        messages += deleted
        if deleted < PURGE_BATCH:
            break
    while True:
        deleted = _count(
            await pool.execute(
                "DELETE FROM conversations WHERE id IN (SELECT c.id FROM conversations c"
                " WHERE c.updated_at < now() - make_interval(days => $1)"
                " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id) LIMIT $2)",
                days,
                PURGE_BATCH,
            )
        )
        conversations += deleted
        if deleted < PURGE_BATCH:
            break
    async with pool.acquire() as conn:
        gaps = await GapRepository(pool).delete_empty_gaps(conn)
        # The summary's rollup of those days goes too (numbers only, but the period is the period).
        for table in ("insight_days", "insight_day_sections"):
            await conn.execute(
                f"DELETE FROM {table} WHERE day < ((now() - make_interval(days => $1)) AT TIME ZONE 'UTC')::date",  # noqa: S608
                days,
            )
    vector_cache().clear()
    return PurgeResult(messages, conversations, gaps)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def sweep_once(pool: Pool, days: int) -> PurgeResult | None:
    """One sweep; a failure (the database is down) is logged and waits for the next one."""
    try:
        result = await purge(pool, days)
    except Exception as exc:
        log.warning(
            "retention sweep failed",
            exc_info=None if is_database_outage(exc) else exc,
            extra={"cause": type(exc).__name__},
        )
        return None
    if result.messages or result.conversations or result.gaps:
        log.info(
            "retention sweep",
            extra={"messages": result.messages, "conversations": result.conversations, "gaps": result.gaps},
        )
    return result


async def _sweep_periodically(pool: Pool, days: int, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await sweep_once(pool, days)


@asynccontextmanager
async def retention_upkeep(pool: Pool, settings: Settings) -> AsyncIterator[None]:
    """While the app serves, with `RETENTION_DAYS` set: a sweep now, then one every `RETENTION_SWEEP_INTERVAL`
    seconds (a day by default); without it, nothing runs and nothing is deleted."""
    days = settings.retention_days
    if days is None:
        yield
        return
    await sweep_once(pool, days)
    sweeper = asyncio.create_task(
        _sweep_periodically(pool, days, settings.retention_sweep_interval), name="bookchat-retention-sweep"
    )
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.wait({sweeper})
