"""Redis stopped under a running app: chat and sign-in go on (limits fail open, logged once), and the limits
hold again when Redis returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for, reader_on
from tests.conftest import client_for
from tests.faults.conftest import report
from tests.faults.services import PrivateRedis


async def test_chat_and_sign_in_go_on_without_redis(
    private_redis: PrivateRedis, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        llm_provider="none",
        search_limit=3,
        rate_limit_enabled=True,
        redis_url=private_redis.url,
        rate_limit_chat="4/minute",
        rate_limit_auth="1000/minute",
        rate_limit_ip="1000/minute",
    )
    question = {"message": "How does Gazebo simulate a lidar sensor?"}
    async with chat_app_for(settings) as app, reader_on(app) as reader, client_for(app) as anonymous:
        assert (await reader.http.post("/api/chat", json=question)).status_code == 200
        await asyncio.to_thread(private_redis.stop)
        caplog.clear()
        started = time.monotonic()
        during = [(await reader.http.post("/api/chat", json=question)).status_code for _ in range(8)]
        slowest = time.monotonic() - started
        guest = await anonymous.post("/api/auth/guest")
        # Fail open: a limiter outage must not take chat or sign-in down with it; no limit is enforced meanwhile.
        assert during == [200] * 8
        assert guest.status_code in (200, 201)
        warnings = [record for record in caplog.records if "rate-limit storage unavailable" in record.getMessage()]
        assert len(warnings) == 1, "the outage is logged once, not on every request"

        await asyncio.to_thread(private_redis.start)
        returned = time.monotonic()
        statuses: list[int] = []
        while 429 not in statuses:
            statuses.append((await reader.http.post("/api/chat", json=question)).status_code)
            assert len(statuses) <= 10, f"limits did not resume: {statuses}"
        resumed_after = time.monotonic() - returned
        # Redis came back empty: the budget of 4 per minute counts afresh.
        assert statuses == [200] * 4 + [429]
    report(
        "redis-stopped",
        requests_during_outage=len(during),
        refused_during_outage=during.count(429) + during.count(503),
        seconds_for_the_outage_requests=round(slowest, 2),
        limits_resumed_after_seconds=round(resumed_after, 2),
    )
