"""PostgreSQL advisory locks that hold through transaction-mode poolers: transaction-scoped, waited for politely.

A session lock (`pg_advisory_lock`) belongs to a server session; behind PgBouncer in transaction mode (Neon's
pooled URL) the next statement may run on another session, so the unlock misses and the lock leaks. A
transaction-scoped lock (`pg_advisory_xact_lock`) lives exactly as long as its transaction, which a pooler
keeps on one server session from BEGIN to the end, and a client that dies takes the transaction, and the lock,
with it. Waiting is a loop of `pg_try_advisory_xact_lock`, never one statement that `command_timeout` cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

Conn = asyncpg.Connection | PoolConnectionProxy
# How often a waiter retries, and how often it says it is still waiting.
POLL_SECONDS = 0.2
NOTICE_SECONDS = 5.0


class LockTimeout(RuntimeError):
    """The lock was still held by someone else when the wait ran out; the message says what holds it."""


class _Patience:
    """How long a waiter has waited: says so every NOTICE_SECONDS, raises LockTimeout when the time is up."""

    def __init__(self, what: str, wait_seconds: float | None, on_wait: Callable[[float], None] | None) -> None:
        self.what = what
        self.wait_seconds = wait_seconds
        self.on_wait = on_wait
        self.started = self.next_notice = time.monotonic()

    async def wait(self) -> None:
        waited = time.monotonic() - self.started
        if self.wait_seconds is not None and waited >= self.wait_seconds:
            raise LockTimeout(f"{self.what} is held by another process; gave up after {waited:.0f} s")
        if time.monotonic() >= self.next_notice:
            if self.on_wait is not None:
                self.on_wait(waited)
            else:
                log.info(f"waiting for {self.what} ({waited:.0f} s so far)")
            self.next_notice += NOTICE_SECONDS
        await asyncio.sleep(POLL_SECONDS)


def lock_key(name: str) -> int:
    """A 64-bit advisory-lock key from a name (SHA-256), so two purposes never share a lock by accident."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def wait_for_xact_lock(
    conn: Conn,
    key: int,
    *,
    what: str,
    wait_seconds: float | None,
    on_wait: Callable[[float], None] | None = None,
) -> None:
    """Take `key` for the transaction open on `conn`, retrying until `wait_seconds` seconds (None: for ever).

    `on_wait(seconds_waited)` is called when the lock is first found busy and then every NOTICE_SECONDS;
    without it a log line says so. Raises LockTimeout naming `what` when the time runs out.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("a transaction-scoped advisory lock needs an open transaction")
    patience = _Patience(what, wait_seconds, on_wait)
    while not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key):
        await patience.wait()


@asynccontextmanager
async def holding_lock(
    pool: asyncpg.Pool,
    key: int,
    *,
    what: str,
    wait_seconds: float | None,
    on_wait: Callable[[float], None] | None = None,
) -> AsyncIterator[None]:
    """Hold `key` for the duration of the block, on a connection of its own that only holds the lock.

    The work inside uses other connections and commits as it goes (so what it wrote survives a crash); the
    lock's transaction writes nothing and is rolled back at the end, which releases the lock. While the lock is
    busy a waiter holds no connection between tries: waiters must not starve the pool that the holder's work
    needs (six uploads on a pool of five would otherwise wait on each other until they all time out).
    """
    patience = _Patience(what, wait_seconds, on_wait)
    while True:
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                taken = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
                if taken:
                    yield
                    return
            finally:
                # A broken connection has lost the lock already; the pool discards it on release.
                with contextlib.suppress(Exception):
                    await asyncio.shield(transaction.rollback())
        await patience.wait()
