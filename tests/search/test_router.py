"""POST /api/search: authentication, validation of every field, results, filters and upstream failures."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookchat.auth.dependencies import app_token_codec
from bookchat.config import Settings
from bookchat.retrieval.embeddings import EmbeddingError
from bookchat.retrieval.search import HybridRetriever, Passage
from bookchat.retrieval.store import EmbeddingModelMismatch
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.runtime.resources import Resources
from tests.conftest import ADMIN_TOKEN, client_for, running_app
from tests.retrieval.helpers import passage

GUIDE = str(uuid.uuid5(uuid.NAMESPACE_URL, "docs/guide/install.md"))
FAQ = str(uuid.uuid5(uuid.NAMESPACE_URL, "docs/faq.md"))
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(collection="search-api", rate_limit_search="1000/minute")) as running:
        resources: Resources = running.state.resources
        await resources.retriever.index_passages(
            [
                passage(GUIDE, 0, "Install bookchat with pip and run make serve.", source_path="docs/guide/install.md",
                        title="Installation", heading_path=("Install",), url="https://book.example.org/guide/install"),
                passage(GUIDE, 1, "Set BOOKCHAT_DATABASE_URL to use an external PostgreSQL server.",
                        source_path="docs/guide/install.md", title="Installation", heading_path=("Configure",)),
                passage(FAQ, 0, "Answers cite the passages they come from with numbered references.",
                        source_path="docs/faq.md", title="FAQ"),
            ]
        )  # fmt: skip
        yield running


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, Authorization=f"Bearer {ADMIN_TOKEN}") as session:
        yield session


def guest_token(app: FastAPI) -> str:
    codec = app_token_codec(app)
    return codec.issue_access(f"guest:{uuid.uuid4()}", "guest").token


async def test_search_needs_a_bearer_token(app: FastAPI) -> None:
    async with client_for(app) as anonymous:
        response = await anonymous.post("/api/search", json={"query": "install"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    async with client_for(app, Authorization="Bearer not-a-token") as forged:
        assert (await forged.post("/api/search", json={"query": "install"})).status_code == 401


async def test_a_guest_finds_passages_with_everything_a_citation_needs(app: FastAPI) -> None:
    async with client_for(app, Authorization=f"Bearer {guest_token(app)}") as guest:
        response = await guest.post("/api/search", json={"query": "install it with pip", "limit": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "install it with pip"
    assert body["mode"] == "hybrid"
    assert body["took_ms"] >= 0
    assert len(body["hits"]) == 2
    top = body["hits"][0]
    assert top["source_path"] == "docs/guide/install.md"
    assert top["chunk_index"] == 0
    assert top["url"] == "https://book.example.org/guide/install"
    assert top["heading_path"] == ["Install"]
    assert set(top) == {
        "chunk_id", "document_id", "chunk_index", "source_path", "title", "url", "heading_path", "text", "page",
        "score",
    }  # fmt: skip


@pytest.mark.parametrize("mode", ["dense", "bm25"])
async def test_single_modes(http: httpx.AsyncClient, mode: str) -> None:
    response = await http.post("/api/search", json={"query": "PostgreSQL server URL", "mode": mode, "limit": 1})
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == mode
    assert [hit["chunk_index"] for hit in response.json()["hits"]] == [1]


async def test_filters(http: httpx.AsyncClient) -> None:
    by_document = await http.post("/api/search", json={"query": "install", "filters": {"document_ids": [FAQ]}})
    assert {hit["document_id"] for hit in by_document.json()["hits"]} == {FAQ}
    by_folder = await http.post("/api/search", json={"query": "answers", "filters": {"path_prefix": "docs/guide"}})
    assert {hit["source_path"] for hit in by_folder.json()["hits"]} == {"docs/guide/install.md"}
    nothing = await http.post("/api/search", json={"query": "install", "filters": {"path_prefix": "blog"}})
    assert nothing.status_code == 200
    assert nothing.json()["hits"] == []


async def test_the_query_is_trimmed(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/search", json={"query": "  install  "})
    assert response.json()["query"] == "install"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": 42}, "query"),
        ({"query": "ok", "limit": 0}, "limit"),
        ({"query": "ok", "limit": 51}, "limit"),
        ({"query": "ok", "limit": "many"}, "limit"),
        ({"query": "ok", "mode": "fuzzy"}, "mode"),
        ({"query": "ok", "filters": {"document_ids": ["not-a-uuid"]}}, "filters"),
        ({"query": "ok", "filters": {"document_ids": []}}, "filters"),
        ({"query": "ok", "filters": {"document_ids": [str(uuid.uuid4()) for _ in range(101)]}}, "filters"),
        ({"query": "ok", "filters": {"path_prefix": ""}}, "filters"),
        ({"query": "ok", "filters": {"path_prefix": "docs\nx"}}, "filters"),
        ({"query": "ok", "filters": {"tags": ["x"]}}, "filters"),
        ({"query": "ok", "filters": "docs"}, "filters"),
        ({"query": "ok", "stream": True}, "stream"),
    ],
)
async def test_bad_bodies_are_422_problems(http: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    response = await http.post("/api/search", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert field in response.text


async def test_a_1000_character_query_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/search", json={"query": "install " * 124 + "12345678", "limit": 50})
    assert response.status_code == 200, response.text
    assert len(response.json()["hits"]) == 3


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (EmbeddingError("upstream said 500 with secret details", status=500), 502, "embeddings-failed"),
        (EmbeddingError("rate limited", status=429), 503, "embeddings-rate-limited"),
        (EmbeddingModelMismatch("collection built with another model"), 503, "index-unavailable"),
    ],
)
async def test_upstream_failures_become_problems(
    app: FastAPI, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, code: str
) -> None:
    async def failing(self: HybridRetriever, *args: Any, **kwargs: Any) -> list[Passage]:
        raise error

    monkeypatch.setattr(HybridRetriever, "search", failing)
    response = await http.post("/api/search", json={"query": "install"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["code"] == code
    assert "secret details" not in response.text
    if status == 503 and code == "embeddings-rate-limited":
        assert response.headers["retry-after"] == "10"


async def test_the_endpoint_is_documented(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/search"]["post"]
    assert operation["summary"] == "Search the book"
    assert {"401", "422", "429", "502", "503"} <= set(operation["responses"])
    request = schema["components"]["schemas"]["SearchRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["query"]["maxLength"] == 1000


async def test_a_dead_engine_process_is_a_503_and_the_next_search_starts_it_again(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    engine = app.state.resources.store.client
    assert isinstance(engine, EdgeProcessClient)  # the default
    first_pid = engine.pid
    os.kill(first_pid, signal.SIGSTOP)  # the search below reaches the engine and waits there
    try:
        pending = asyncio.ensure_future(http.post("/api/search", json={"query": "install bookchat"}))
        await asyncio.sleep(0.5)
        assert not pending.done()
    finally:
        os.kill(first_pid, signal.SIGKILL)
        os.kill(first_pid, signal.SIGCONT)
    failed = await pending
    assert failed.status_code == 503
    assert failed.headers["content-type"].startswith(PROBLEM_JSON)
    assert failed.json()["code"] == "index-unavailable"
    again = await http.post("/api/search", json={"query": "install bookchat"})
    assert again.status_code == 200
    assert again.json()["hits"][0]["title"] == "Installation"
    assert engine.pid != first_pid
