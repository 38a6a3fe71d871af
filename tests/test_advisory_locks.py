"""Transaction-scoped advisory locks: waited for by polling (no command timeout ends the wait), released by the end
of their transaction, refused with one clear line when a wait runs out."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from bookchat.runtime.advisory_locks import LockTimeout, holding_lock, lock_key, wait_for_xact_lock


@pytest.fixture
def key() -> int:
    return lock_key(f"test:{uuid.uuid4()}")


async def test_a_wait_outlasts_the_command_timeout(database_url: str, key: int) -> None:
    holder = await asyncpg.connect(database_url)
    waiter = await asyncpg.connect(database_url, command_timeout=0.3)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_advisory_xact_lock($1)", key)
        async with waiter.transaction():
            notices: list[float] = []
            task = asyncio.create_task(
                wait_for_xact_lock(waiter, key, what="the test lock", wait_seconds=None, on_wait=notices.append)
            )
            await asyncio.sleep(1.2)  # four command timeouts
            assert not task.done()
            assert notices
            assert notices[0] < 0.5
            await holder.execute("ROLLBACK")  # the holder's transaction ends: the waiter gets the lock
            await asyncio.wait_for(task, 5)
    finally:
        await holder.close()
        await waiter.close()


async def test_a_wait_that_runs_out_names_the_lock(database_url: str, key: int) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=3)
    try:
        async with holding_lock(pool, key, what="the test lock", wait_seconds=None):
            with pytest.raises(LockTimeout, match="the test lock is held by another process"):
                async with holding_lock(pool, key, what="the test lock", wait_seconds=0.3):
                    pytest.fail("the lock was taken twice")
        # Released with its transaction: taken again at once.
        async with holding_lock(pool, key, what="the test lock", wait_seconds=0.5):
            pass
    finally:
        await pool.close()


async def test_the_lock_goes_with_a_dead_connection(database_url: str, key: int) -> None:
    doomed = await asyncpg.connect(database_url)
    await doomed.execute("BEGIN")
    await doomed.execute("SELECT pg_advisory_xact_lock($1)", key)
    doomed.terminate()  # the process died: no ROLLBACK, no unlock
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await wait_for_xact_lock(other, key, what="the test lock", wait_seconds=5)
    finally:
        await other.close()


async def test_a_lock_needs_a_transaction(database_url: str, key: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(RuntimeError, match="open transaction"):
            await wait_for_xact_lock(conn, key, what="the test lock", wait_seconds=1)
    finally:
        await conn.close()
