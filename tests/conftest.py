"""Shared fixtures: a throw-away PostgreSQL database, Qdrant in a temp folder, and the app with its lifespan."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from bookchat.main import create_app
from tests.fakes.llm_server import FakeLLMServer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"

# Settings read the environment and `.env`; tests must not pick up a developer's configuration.
for _name in list(os.environ):
    if (_name.startswith("BOOKCHAT_") and _name != "BOOKCHAT_TEST_DATABASE_URL") or _name == "GEMINI_API_KEY":
        os.environ.pop(_name)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`BOOKCHAT_TEST_DATABASE_URL`, or an embedded pgserver started for this session."""
    configured = os.environ.get("BOOKCHAT_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    import pgserver

    with traversable_temp_dir() as folder:
        server = pgserver.get_server(folder / "data", cleanup_mode="stop")  # type: ignore[attr-defined]
        yield str(server.get_uri())
        server.cleanup()


@contextmanager
def traversable_temp_dir() -> Iterator[Path]:
    """A temp folder others may traverse: as root, pgserver runs PostgreSQL as its own `pgserver` user,
    which cannot enter pytest's 0700 temp folders."""
    folder = Path(tempfile.mkdtemp(prefix="bookchat-pg-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def throwaway_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A uniquely named database on `server_url`, dropped (connections and all) when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A uniquely named database created for this session and dropped at its end."""
    async with throwaway_database(postgres_server_url, "bookchat_test") as url:
        yield url


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A second throw-away database with no schema (migration tests), dropped after the test."""
    async with throwaway_database(postgres_server_url, "bookchat_migrate") as url:
        yield url


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `models` folder for every data folder of the session: the bundled embedding model is converted into
    it once (a second or two), not once per app."""
    return tmp_path_factory.mktemp("models")


def share_models(data_dir: Path, models_dir: Path) -> Path:
    """`data_dir`, created, with its `models` folder pointing at the session's."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(models_dir, target_is_directory=True)
    return data_dir


@pytest.fixture(scope="session")
def make_settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Callable[..., Settings]:
    """Settings for a test app: the session's database, a fresh Qdrant folder, no LLM, known secrets."""

    def build(**overrides: Any) -> Settings:
        data_dir = share_models(tmp_path_factory.mktemp("bookchat"), models_dir)
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": database_url,
            # Every app keeps its own Qdrant folder, so each gets a collection of its own in the shared database
            # (the database records which vector store holds a collection, and refuses a second one).
            "collection": f"test_{data_dir.name.replace('-', '_')}",
            "llm_provider": "none",
            "admin_token": ADMIN_TOKEN,
            "jwt_secret": JWT_SECRET,
            "log_json": False,
            "db_pool_min_size": 0,
            "db_pool_max_size": 5,
            # The session app is shared by many tests; the rate-limit tests switch limits on for themselves.
            "rate_limit_enabled": False,
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered, as `uvicorn` would run it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
        headers=headers,
        timeout=30,
    )


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture(scope="session")
def make_app(make_settings: Callable[..., Settings]) -> AppFactory:
    """`async with make_app(collection="x", ...) as app:` — a running app with settings overridden."""

    def build(**overrides: Any) -> AbstractAsyncContextManager[FastAPI]:
        return running_app(make_settings(**overrides))

    return build


@pytest.fixture(scope="session")
async def app(make_app: AppFactory) -> AsyncIterator[FastAPI]:
    """One running app shared by the session's tests (tests keep their data apart by owner or collection)."""
    async with make_app() as running:
        yield running


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
async def admin_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, Authorization=f"Bearer {ADMIN_TOKEN}") as http:
        yield http


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    """One OpenAI-compatible fake LLM over HTTP for the whole session."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def llm(fake_llm: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The session's fake LLM with no scripted replies or recorded requests left by another test."""
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return asyncio.DefaultEventLoopPolicy()
