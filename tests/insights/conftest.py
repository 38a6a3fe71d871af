"""Insights fixtures: an app on a database of its own (the summary counts everything in it), with the book."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for
from tests.conftest import ADMIN_TOKEN, client_for, throwaway_database


@pytest.fixture(scope="module")
async def insights_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with throwaway_database(postgres_server_url, "bookchat_insights") as url:
        yield url


@pytest.fixture(scope="module")
async def insights_app(make_settings: Callable[..., Settings], insights_database: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url=insights_database, llm_provider="none", search_limit=3)
    async with chat_app_for(settings) as app:
        yield app


@pytest.fixture
async def admin(insights_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(insights_app, Authorization=f"Bearer {ADMIN_TOKEN}") as http:
        yield http


@pytest.fixture
async def clean(insights_app: FastAPI) -> None:
    """Every test starts from no conversation and no gap (the module's tests share the database)."""
    pool = insights_app.state.resources.database.pool
    await pool.execute("DELETE FROM conversations")
    await pool.execute("DELETE FROM insight_gaps")
    await pool.execute("DELETE FROM insight_days")
    await pool.execute("DELETE FROM insight_day_sections")
    await pool.execute("UPDATE insight_state SET watermark = '-infinity', days_through = NULL")
