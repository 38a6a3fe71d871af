"""Upkeep of chat turns outside any request: answers a crash left `pending` are swept to `error`/`interrupted`
(at start-up and periodically), and the turn writes still running at shutdown are waited for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bookchat.chat.bookkeeping import drain_background_writes
from bookchat.config import Settings
from bookchat.conversations.repository import ConversationRepository
from bookchat.runtime.database import Pool, is_database_outage

log = logging.getLogger(__name__)

# How long a clean stop waits for the detached writes (a cancelled turn's partial answer) before closing the pool.
DRAIN_SECONDS = 5.0
# A turn is several model calls (the agent's turns), each allowed up to LLM_TIMEOUT without a byte: an answer
# pending for less than this many timeouts may still be being written.
LLM_TIMEOUTS_PER_TURN = 5


def interrupted_after(settings: Settings) -> float:
    """Seconds after which a pending answer is taken as interrupted."""
    return max(settings.pending_answer_timeout, LLM_TIMEOUTS_PER_TURN * settings.llm_timeout)


async def sweep_once(repository: ConversationRepository, older_than: float) -> int:
    """One sweep; a failure (the database is down) is logged and waits for the next one."""
    try:
        swept = await repository.sweep_interrupted(older_than=older_than)
    except Exception as exc:
        log.warning(
            "sweep of interrupted answers failed",
            exc_info=None if is_database_outage(exc) else exc,
            extra={"cause": type(exc).__name__},
        )
        return 0
    if swept:
        log.info("interrupted answers swept", extra={"answers": swept})
    return swept


async def _sweep_periodically(repository: ConversationRepository, older_than: float, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await sweep_once(repository, older_than)


@asynccontextmanager
async def turn_upkeep(pool: Pool, settings: Settings) -> AsyncIterator[None]:
    """While the app serves: a sweep now, then one every `PENDING_SWEEP_INTERVAL` seconds; on the way out the
    sweeps stop and the turn writes still running get up to `DRAIN_SECONDS` (before the pool closes)."""
    repository = ConversationRepository(pool)
    older_than = interrupted_after(settings)
    await sweep_once(repository, older_than)
    sweeper = asyncio.create_task(
        _sweep_periodically(repository, older_than, settings.pending_sweep_interval), name="bookchat-answer-sweep"
    )
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.wait({sweeper})
        await drain_background_writes(DRAIN_SECONDS)
