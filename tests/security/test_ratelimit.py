"""Rate limits: 429 problem+json with Retry-After and RateLimit-*, in memory and shared through Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import Depends, FastAPI
from starlette.requests import Request

from bookchat.auth.dependencies import PrincipalDep
from bookchat.auth.rate_limits import acquire_stream_slot, rate_limit
from bookchat.auth.tokens import TokenCodec
from bookchat.config import Settings
from bookchat.edge.problems import install_problem_handlers
from bookchat.errors import TooManyRequests
from bookchat.runtime import rate_limiter
from bookchat.runtime.rate_limiter import RateLimitConfigError, RateLimiter
from tests.security.conftest import REDIS_URL

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path, "jwt_secret": SECRET, "_env_file": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def limited_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_problem_handlers(app)

    @app.post("/api/auth/thing", dependencies=[Depends(rate_limit("auth"))])
    async def auth_thing() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/chat", dependencies=[Depends(rate_limit("chat"))])
    async def chat(principal: PrincipalDep) -> dict[str, str]:
        return {"id": principal.id}

    return app


def http(app: FastAPI, peer: str = "203.0.113.7", **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


def assert_429(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "rate-limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


async def test_auth_limit_in_memory(tmp_path: Path) -> None:
    app = limited_app(make_settings(tmp_path, rate_limit_auth="3/minute"))
    async with http(app) as client, http(app, peer="198.51.100.1") as other:
        answers = [await client.post("/api/auth/thing") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
        assert_429(await client.post("/api/auth/thing"), 3)
        # Another IP has its own budget.
        assert (await other.post("/api/auth/thing")).status_code == 200


async def test_chat_limit_per_principal_and_per_ip(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_chat="2/minute", rate_limit_ip="3/minute")
    app = limited_app(settings)
    codec = TokenCodec.from_settings(settings)
    alice = codec.issue_access(f"user:{uuid.uuid4()}", "user").token
    bob = codec.issue_access(f"user:{uuid.uuid4()}", "user").token
    async with http(app, Authorization=f"Bearer {alice}") as a, http(app, Authorization=f"Bearer {bob}") as b:
        assert (await a.post("/api/chat")).status_code == 200
        assert (await a.post("/api/chat")).status_code == 200
        assert_429(await a.post("/api/chat"), 2)  # alice's own budget
        assert (await b.post("/api/chat")).status_code == 200
        # Same IP: the per-IP budget (3) is now spent, so bob is refused although he has budget left.
        assert_429(await b.post("/api/chat"), 3)
    async with http(app) as anonymous:
        assert (await anonymous.post("/api/chat")).status_code == 401


async def test_disabled_limits_let_everything_through(tmp_path: Path) -> None:
    app = limited_app(make_settings(tmp_path, rate_limit_auth="1/minute", rate_limit_enabled=False))
    async with http(app) as client:
        assert all([(await client.post("/api/auth/thing")).status_code == 200 for _ in range(5)])


def test_bad_limit_expression_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(RateLimitConfigError, match="RATE_LIMIT_CHAT"):
        RateLimiter(make_settings(tmp_path, rate_limit_chat="lots"))


async def test_limits_are_shared_by_two_app_instances_through_redis(tmp_path: Path, redis_prefix: str) -> None:
    settings = make_settings(tmp_path, rate_limit_auth="4/minute", redis_url=REDIS_URL, rate_limit_prefix=redis_prefix)
    first, second = limited_app(settings), limited_app(settings)
    async with http(first) as one, http(second) as two:
        statuses = [(await (one if i % 2 else two).post("/api/auth/thing")).status_code for i in range(4)]
        assert statuses == [200, 200, 200, 200]
        assert_429(await one.post("/api/auth/thing"), 4)
        assert_429(await two.post("/api/auth/thing"), 4)
    for app in (first, second):
        await app.state.rate_limiter.close()


async def test_unreachable_redis_fails_open(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_auth="1/minute", redis_url="redis://127.0.0.1:1/0")
    app = limited_app(settings)
    async with http(app) as client:
        assert (await client.post("/api/auth/thing")).status_code == 200
        assert (await client.post("/api/auth/thing")).status_code == 200


@pytest.mark.parametrize("shared", [False, True])
async def test_concurrent_stream_cap(tmp_path: Path, redis_prefix: str, shared: bool) -> None:
    extra: dict[str, object] = {"redis_url": REDIS_URL, "rate_limit_prefix": redis_prefix} if shared else {}
    settings = make_settings(tmp_path, max_concurrent_streams=2, **extra)
    limiter, other_replica = RateLimiter(settings), RateLimiter(settings)
    try:
        async with limiter.stream_slot("user:a"), limiter.stream_slot("user:a"):
            with pytest.raises(TooManyRequests) as refused:
                async with (other_replica if shared else limiter).stream_slot("user:a"):
                    pass
            assert refused.value.code == "too-many-streams"
            assert refused.value.headers["Retry-After"]
            async with limiter.stream_slot("user:b"):  # others are unaffected
                pass
        # Slots are released on exit, errors included.
        with pytest.raises(RuntimeError):
            async with limiter.stream_slot("user:a"):
                raise RuntimeError
        release = await limiter.acquire_stream("user:a")
        await release()
        await release()  # a second release must not free someone else's slot
        async with limiter.stream_slot("user:a"), limiter.stream_slot("user:a"):
            pass
    finally:
        await limiter.close()
        await other_replica.close()


async def test_stream_slot_helpers_use_the_app_limiter(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_concurrent_streams=1)
    app = limited_app(settings)
    codec = TokenCodec.from_settings(settings)
    held = asyncio.Event()
    done = asyncio.Event()

    @app.get("/api/hold")
    async def hold(principal: PrincipalDep, request: Request) -> dict[str, str]:
        release = await acquire_stream_slot(request, principal)
        try:
            held.set()
            await done.wait()
        finally:
            await release()
        return {"ok": "yes"}

    @app.get("/api/try")
    async def attempt(principal: PrincipalDep, request: Request) -> dict[str, str]:
        release = await acquire_stream_slot(request, principal)
        await release()
        return {"ok": "yes"}

    token = codec.issue_access(f"user:{uuid.uuid4()}", "user").token
    async with http(app, Authorization=f"Bearer {token}") as client:
        holder = asyncio.create_task(client.get("/api/hold"))
        await held.wait()
        refused = await client.get("/api/try")
        assert refused.status_code == 429
        assert refused.json()["code"] == "too-many-streams"
        done.set()
        assert (await holder).status_code == 200
        assert (await client.get("/api/try")).status_code == 200


def stream_settings(tmp_path: Path, redis_prefix: str) -> Settings:
    return make_settings(tmp_path, max_concurrent_streams=1, redis_url=REDIS_URL, rate_limit_prefix=redis_prefix)


def lease_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("bookchat-stream-lease")]


async def test_a_crashed_replicas_stream_slot_is_free_once_its_lease_lapses(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crashed replica holds its readers' slots for one lease: short in production, tiny here.
    assert rate_limiter.STREAM_LEASE_SECONDS <= 60
    monkeypatch.setattr(rate_limiter, "STREAM_LEASE_SECONDS", 1)
    settings = stream_settings(tmp_path, redis_prefix)
    crashed, survivor = RateLimiter(settings), RateLimiter(settings)
    try:
        await crashed.acquire_stream("user:a")  # its release() is never called
        await crashed.close()  # the process is gone: nothing renews its lease any more
        with pytest.raises(TooManyRequests):
            await survivor.acquire_stream("user:a")
        await asyncio.sleep(1.5)
        release = await survivor.acquire_stream("user:a")
        await release()
    finally:
        await crashed.close()
        await survivor.close()


async def test_a_live_stream_keeps_its_slot_longer_than_the_lease(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limiter, "STREAM_LEASE_SECONDS", 1)
    settings = stream_settings(tmp_path, redis_prefix)
    live, other = RateLimiter(settings), RateLimiter(settings)
    try:
        release = await live.acquire_stream("user:a")
        for _ in range(3):  # three leases long
            await asyncio.sleep(1.0)
            with pytest.raises(TooManyRequests):
                await other.acquire_stream("user:a")
        await release()
        assert lease_tasks() == [], "release() stops the heartbeat"
        # ... and frees the slot at once, not when the lease lapses.
        second = await other.acquire_stream("user:a")
        await second()
    finally:
        await live.close()
        await other.close()


async def test_a_lost_lease_is_logged_once_and_not_renewed(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rate_limiter, "STREAM_LEASE_SECONDS", 1)
    settings = stream_settings(tmp_path, redis_prefix)
    limiter = RateLimiter(settings)
    connection = redis_asyncio.from_url(REDIS_URL)
    try:
        release = await limiter.acquire_stream("user:a")
        await connection.delete(f"{redis_prefix}:streams:user:a")  # swept, say, after a long pause
        with caplog.at_level(logging.WARNING, logger="bookchat.runtime.rate_limiter"):
            await asyncio.sleep(1.2)
        assert [record.getMessage() for record in caplog.records if "lease" in record.getMessage()] == [
            "stream slot lease lost (Redis no longer holds it); not renewed"
        ]
        assert lease_tasks() == []
        assert await connection.exists(f"{redis_prefix}:streams:user:a") == 0, "a lost slot is not re-added"
        await release()
    finally:
        await limiter.close()
        await connection.aclose()


async def test_a_slot_never_released_stops_being_renewed_after_the_longest_stream(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limiter, "STREAM_LEASE_SECONDS", 1)
    monkeypatch.setattr(rate_limiter, "STREAM_MAX_SECONDS", 1)
    settings = stream_settings(tmp_path, redis_prefix)
    leaky, other = RateLimiter(settings), RateLimiter(settings)
    try:
        await leaky.acquire_stream("user:a")  # a bug: release() is forgotten while the process lives on
        await asyncio.sleep(2.2)
        assert lease_tasks() == []
        release = await other.acquire_stream("user:a")
        await release()
    finally:
        await leaky.close()
        await other.close()
