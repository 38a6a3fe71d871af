"""Fixtures shared by the chat and conversations tests: the fake LLM, apps wired to it, a tiny indexed book."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bookchat.auth.tokens import TokenCodec
from bookchat.config import Settings
from bookchat.main import create_app
from bookchat.retrieval.search import Passage, chunk_point_id
from bookchat.runtime.resources import Resources
from tests.fakes.llm_server import FakeLLMServer

BOOK_URL = "https://book.example.org/docs"

# A four-page "book": distinct topics, so a question finds its passage by both BM25 and meaning.
BOOK: list[dict[str, Any]] = [
    {
        "path": "module-2/gazebo-sensors.md",
        "title": "Simulating sensors in Gazebo",
        "heading_path": ("Module 2", "Gazebo", "Sensors"),
        "text": "Gazebo simulates a lidar sensor by casting rays from the sensor origin and measuring the distance "
        "to the first obstacle each ray hits. The ray count, range and noise are set in the sensor plugin of "
        "the robot description.",
    },
    {
        "path": "module-1/urdf.md",
        "title": "Describing a robot with URDF",
        "heading_path": ("Module 1", "URDF"),
        "text": "A URDF file describes the links and joints of a robot in XML. Each joint connects a parent link "
        "to a child link and declares its type, such as revolute or prismatic.",
    },
    {
        "path": "module-1/topics.md",
        "title": "ROS 2 topics",
        "heading_path": ("Module 1", "Communication", "Topics"),
        "text": "Nodes in ROS 2 exchange messages over named topics. A publisher sends messages and every "
        "subscriber of the topic receives them; quality-of-service settings control reliability.",
    },
    {
        "path": "module-3/isaac.md",
        "title": "Photorealistic simulation with Isaac Sim",
        "heading_path": ("Module 3", "Isaac Sim"),
        "text": "Isaac Sim renders photorealistic scenes with ray tracing and generates synthetic training data "
        "for perception models, including segmentation masks and depth images.",
    },
]


def book_passages() -> list[Passage]:
    passages = []
    for page in BOOK:
        document_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "bookchat-test:" + page["path"]))
        passages.append(
            Passage(
                chunk_id=chunk_point_id(document_id, 0),
                document_id=document_id,
                chunk_index=0,
                source_path=page["path"],
                title=page["title"],
                url=f"{BOOK_URL}/{page['path'].removesuffix('.md')}",
                heading_path=page["heading_path"],
                text=page["text"],
            )
        )
    return passages


@asynccontextmanager
async def chat_app_for(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        resources: Resources = app.state.resources
        await resources.retriever.index_passages(book_passages())
        yield app


def token_for(app: FastAPI, subject: str | None = None, role: str = "guest") -> str:
    codec: TokenCodec | None = getattr(app.state, "token_codec", None)
    if codec is None:
        codec = TokenCodec.from_settings(app.state.settings)
    subject = subject or f"guest:{uuid.uuid4()}"
    return codec.issue_access(subject, role).token  # type: ignore[arg-type]


@dataclass
class Reader:
    """A guest with an HTTP client on one app."""

    principal_id: str
    http: httpx.AsyncClient


def client_for(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@asynccontextmanager
async def reader_on(app: FastAPI) -> AsyncIterator[Reader]:
    principal_id = f"guest:{uuid.uuid4()}"
    async with client_for(app, token_for(app, principal_id)) as http:
        yield Reader(principal_id, http)


@asynccontextmanager
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve an already-started app with a real uvicorn in this event loop (streams, disconnects)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """`event:`/`data:` blocks of an SSE body, in order."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data += line[len("data: ") :]
        events.append((name, json.loads(data)))
    return events


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# ---- fixtures (imported by tests/chat/conftest.py and tests/conversations/conftest.py)


def llm_settings(make_settings: Callable[..., Settings], fake: FakeLLMServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "llm_base_url": fake.base_url,
        "llm_model": "fake-model",
        "BOOKCHAT_LLM_API_KEY": "test-llm-key",  # the field is read by its alias
        "llm_timeout": 1.0,
        "llm_max_retries": 0,
        "rate_limit_enabled": False,
        "search_limit": 3,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture(scope="session")
async def chat_app(make_settings: Callable[..., Settings], fake_llm: FakeLLMServer) -> AsyncIterator[FastAPI]:
    async with chat_app_for(llm_settings(make_settings, fake_llm)) as app:
        yield app


@pytest.fixture(scope="session")
async def extractive_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async with chat_app_for(make_settings(llm_provider="none", rate_limit_enabled=False, search_limit=3)) as app:
        yield app


@pytest.fixture
async def reader(chat_app: FastAPI, llm: FakeLLMServer) -> AsyncIterator[Reader]:
    async with reader_on(chat_app) as session:
        yield session
