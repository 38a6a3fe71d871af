"""An app with the OpenAI-compatible router, the fake LLM and a tiny indexed book; `openai` clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx2
import openai
import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from bookchat.openai_compat.keys import hash_api_key
from bookchat.runtime.rate_limiter import RateLimiter
from tests.chat.fixtures import chat_app_for, llm_settings
from tests.fakes.llm_server import FakeLLMServer

API_KEY = "sk-bookchat-test-plain-0123456789"
HASHED_API_KEY = "sk-bookchat-test-hashed-9876543210"


@asynccontextmanager
async def compat_app_for(settings: Settings) -> AsyncIterator[FastAPI]:
    """C's chat test app (create_app + the indexed four-page book); create_app() serves /v1 itself."""
    async with chat_app_for(settings) as app:
        yield app


def openai_client(app: FastAPI, api_key: str) -> openai.AsyncOpenAI:
    """The official client, talking to the app in process (no network), without retries."""
    transport = httpx2.ASGITransport(app=app)
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url="http://testserver/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport, base_url="http://testserver", timeout=30),
    )


@pytest.fixture
def fake(llm: FakeLLMServer) -> FakeLLMServer:
    """The session's fake LLM, reset for this test."""
    return llm


@pytest.fixture(scope="session")
async def compat_app(make_settings: Callable[..., Settings], fake_llm: FakeLLMServer) -> AsyncIterator[FastAPI]:
    settings = llm_settings(
        make_settings,
        fake_llm,
        api_keys=[API_KEY, hash_api_key(HASHED_API_KEY)],
        rate_limit_enabled=True,
        rate_limit_chat="4/minute",
        collection="bookchat",  # the model id the tests ask for
    )
    async with compat_app_for(settings) as app:
        yield app


@pytest.fixture(scope="session")
async def compat_extractive_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    settings = make_settings(llm_provider="none", api_keys=[API_KEY], rate_limit_enabled=False, search_limit=3)
    async with compat_app_for(settings) as app:
        yield app


async def reset_rate_limits(app: FastAPI) -> None:
    resources = getattr(app.state, "resources", None)
    for limiter in (getattr(resources, "limiter", None), getattr(app.state, "rate_limiter", None)):
        if isinstance(limiter, RateLimiter):
            await limiter.reset()


@pytest.fixture
async def compat(compat_app: FastAPI) -> FastAPI:
    """The shared app, with every rate-limit counter reset so tests do not spend each other's budget."""
    await reset_rate_limits(compat_app)
    return compat_app


@pytest.fixture
async def api_client(compat: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(compat, API_KEY) as http:
        yield http
