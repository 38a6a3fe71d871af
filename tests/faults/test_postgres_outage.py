"""PostgreSQL restarted under chat load: 503 problem+json while it is down (never a 500 or a hang), readiness
says so, the pool recovers by itself, and every answered question is stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for, reader_on
from tests.faults.conftest import report
from tests.faults.services import PrivatePostgres

# A request during the outage must answer within this (the pool's connect timeout is 10 s).
ANSWER_WITHIN_SECONDS = 12.0


async def test_chat_through_a_postgres_restart(
    private_pg: PrivatePostgres, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=private_pg.url, llm_provider="none", search_limit=3, db_pool_max_size=4)
    results: list[tuple[float, int, dict[str, Any]]] = []
    stop = asyncio.Event()
    async with chat_app_for(settings) as app, reader_on(app) as reader:

        async def ask(number: int) -> tuple[int, dict[str, Any]]:
            started = time.monotonic()
            response = await reader.http.post(
                "/api/chat", json={"message": f"How does Gazebo simulate a lidar sensor? (question {number})"}
            )
            body = response.json()
            results.append((time.monotonic() - started, response.status_code, body))
            if response.status_code != 200:
                assert response.headers["content-type"] == "application/problem+json", body
            return response.status_code, body

        async def load(worker: int) -> None:
            number = 0
            while not stop.is_set():
                number += 1
                await ask(worker * 10_000 + number)
                await asyncio.sleep(0.05)

        workers = [asyncio.create_task(load(worker)) for worker in range(3)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_pg.stop)
        down_at = time.monotonic()
        await asyncio.sleep(2.0)
        status, body = await ask(-1)
        assert status == 503
        assert body["code"] == "database-unavailable"
        ready = await reader.http.get("/api/ready")
        assert ready.status_code == 503
        assert "postgres" in ready.json()["failed"]
        await asyncio.to_thread(private_pg.start)
        up_at = time.monotonic()
        while (await ask(-2))[0] != 200:
            assert time.monotonic() - up_at < 30, "the pool did not recover within 30 s"
            await asyncio.sleep(0.1)
        recovered_after = time.monotonic() - up_at
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        assert (await reader.http.get("/api/ready")).status_code == 200

    statuses = [status for _, status, _ in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(503) > 0
    assert max(seconds for seconds, _, _ in results) < ANSWER_WITHIN_SECONDS
    answered = [body for _, status, body in results if status == 200]
    conn = await asyncpg.connect(private_pg.url)
    try:
        stored = await conn.fetch(
            "SELECT id, conversation_id FROM messages WHERE role = 'assistant' AND id = ANY($1::uuid[])",
            [body["message_id"] for body in answered],
        )
    finally:
        await conn.close()
    assert len(stored) == len(answered), "an answer that reached the reader is not in the database"
    report(
        "postgres-restart",
        requests=len(results),
        answered=len(answered),
        refused_503=statuses.count(503),
        slowest_seconds=round(max(seconds for seconds, _, _ in results), 2),
        outage_seconds=round(up_at - down_at, 1),
        recovered_after_seconds=round(recovered_after, 2),
    )
