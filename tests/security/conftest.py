"""Security-test fixtures: the auth tests' app (generous limits, one CORS origin) and a private Redis prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from tests.auth.conftest import auth_app, http

__all__ = ["REDIS_URL", "auth_app", "http", "redis_prefix"]

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique key prefix on the shared Redis (skip without one); only our own keys are deleted afterwards."""
    connection = redis_asyncio.from_url(REDIS_URL)
    try:
        await connection.ping()
    except Exception:
        await connection.aclose()
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"bookchat-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    async for key in connection.scan_iter(match=f"{prefix}*"):
        await connection.delete(key)
    await connection.aclose()
