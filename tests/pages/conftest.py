"""Pages fixtures: an app wired to a fake model that rewrites sections, a chapter ingested, signed-in readers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from bookchat.documents.ingest import IngestPipeline
from bookchat.main import create_app
from tests.chat.fixtures import llm_settings, token_for
from tests.conftest import client_for
from tests.fakes.llm_server import FakeLLMServer
from tests.pages.fakes import page_reply

PASSWORD = "plum-ferry-quartz-lantern"
CHAPTER_PATH = "module-1/nodes.md"
BASE_URL = "https://book.example.org/docs"

CHAPTER = """---
title: Nodes and topics
---

# Nodes and topics

A ROS 2 system is a graph of **nodes** that talk over topics. See [the ROS docs](https://docs.ros.org/en/rolling/)
and the diagram ![graph](./img/graph.png).

## Writing a publisher

A publisher sends messages on a topic; `rclpy.create_node()` makes the node.

```python
import rclpy
# A comment that looks like a heading:
## not a heading
node = rclpy.create_node("talker")
```

:::tip Quality of service
Reliable delivery retries lost messages; best effort does not.
:::

## Timing {#timing-rules}

The control loop runs at $f = 1/T$ hertz:

$$
T = \\frac{1}{f}
$$

## Wiring it up

Connect the motor driver to the Raspberry Pi's GPIO pins.
"""


@dataclass
class Book:
    app: FastAPI
    llm: FakeLLMServer
    document_id: str

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client_for(self.app, **headers)

    async def ingest(self, text: str, path: str = CHAPTER_PATH) -> str:
        resources = self.app.state.resources
        pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, resources.settings)
        outcome = await pipeline.ingest_document(path, text, base_url=BASE_URL)
        return str(outcome.document_id)

    async def reader(self, background: dict[str, Any] | None = None) -> str:
        """A new account (with `background`, if given) and its access token."""
        email = f"reader-{uuid.uuid4().hex[:10]}@example.org"
        async with self.client() as http:
            body: dict[str, Any] = {"email": email, "password": PASSWORD}
            if background is not None:
                body["background"] = background
            created = await http.post("/api/auth/register", json=body)
            assert created.status_code == 201, created.text
            login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            token: str = login.json()["access_token"]
            return token

    def guest(self) -> str:
        return token_for(self.app)


@asynccontextmanager
async def book_app(settings: Settings, llm: FakeLLMServer) -> AsyncIterator[Book]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        book = Book(app, llm, "")
        book.document_id = await book.ingest(CHAPTER)
        yield book


@pytest.fixture(scope="session")
def pages_llm() -> Iterator[FakeLLMServer]:
    """A fake model of its own: its default reply rewrites the section it is given."""
    with FakeLLMServer(default=page_reply) as server:
        yield server


@pytest.fixture
def model(pages_llm: FakeLLMServer) -> Iterator[FakeLLMServer]:
    pages_llm.reset()
    yield pages_llm
    pages_llm.reset()


@pytest.fixture(scope="session")
def pages_settings(make_settings: Callable[..., Settings], pages_llm: FakeLLMServer) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return llm_settings(make_settings, pages_llm, llm_timeout=5.0, **overrides)

    return build


@pytest.fixture(scope="session")
async def book(pages_settings: Callable[..., Settings], pages_llm: FakeLLMServer) -> AsyncIterator[Book]:
    async with book_app(pages_settings(), pages_llm) as running:
        yield running
