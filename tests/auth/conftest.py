"""Fixtures for the auth tests: one app with generous limits, so only the rate-limit tests meet a 429."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from tests.auth.helpers import client, running


@pytest.fixture(scope="session")
async def auth_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    settings = make_settings(rate_limit_enabled=False, cors_origins=["https://book.example.org"])
    async with running(settings) as app:
        yield app


@pytest.fixture
async def http(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client(auth_app) as session:
        yield session
